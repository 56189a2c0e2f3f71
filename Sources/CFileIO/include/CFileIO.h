#ifndef STANDBY_CFILEIO_H
#define STANDBY_CFILEIO_H

/// Linux calls and flags the Glibc module of Swift does not expose (they need _GNU_SOURCE).

/// Starts writeback of the byte range of `fd` without waiting for it (sync_file_range with
/// SYNC_FILE_RANGE_WRITE), so a later fsync has little left to wait for. Returns 0, or -1 with
/// errno set. Elsewhere than Linux it does nothing and returns 0.
int standby_start_writeback(int fd, long long offset, long long length);

/// O_DIRECT: writes that go from the caller's (aligned) memory to the device, past the page
/// cache. 0 where the system has no such flag.
int standby_o_direct(void);

/// Adds to a spawn's file actions (a `posix_spawn_file_actions_t *`) the closing of every
/// descriptor from `lowest` up in the child (glibc 2.34's posix_spawn_file_actions_addclosefrom_np).
/// Returns 0, or an error number. Where the call does not exist it adds nothing and returns 0.
int standby_spawn_close_from(void *actions, int lowest);

#endif
