#ifndef STANDBY_CSMBCLIENT_SHIM_H
#define STANDBY_CSMBCLIENT_SHIM_H
// Samba's libsmbclient (libsmbclient-dev, pkg-config smbclient): SMB2 and SMB3 with signing,
// encryption, NTLMv2 and Kerberos, for smb:// sources.
#include <sys/types.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <libsmbclient.h>

// The per-context calls are function pointers fetched from the context: one call each here.
static inline SMBCFILE *standby_smbc_open(SMBCCTX *c, const char *url) {
    return smbc_getFunctionOpen(c)(c, url, O_RDONLY, 0);
}
static inline ssize_t standby_smbc_read(SMBCCTX *c, SMBCFILE *file, void *buffer, size_t count) {
    return smbc_getFunctionRead(c)(c, file, buffer, count);
}
static inline off_t standby_smbc_lseek(SMBCCTX *c, SMBCFILE *file, off_t offset) {
    return smbc_getFunctionLseek(c)(c, file, offset, SEEK_SET);
}
static inline int standby_smbc_close(SMBCCTX *c, SMBCFILE *file) {
    return smbc_getFunctionClose(c)(c, file);
}
static inline int standby_smbc_stat(SMBCCTX *c, const char *url, struct stat *st) {
    return smbc_getFunctionStat(c)(c, url, st);
}
static inline int standby_smbc_fstat(SMBCCTX *c, SMBCFILE *file, struct stat *st) {
    return smbc_getFunctionFstat(c)(c, file, st);
}
static inline SMBCFILE *standby_smbc_opendir(SMBCCTX *c, const char *url) {
    return smbc_getFunctionOpendir(c)(c, url);
}
static inline int standby_smbc_closedir(SMBCCTX *c, SMBCFILE *dir) {
    return smbc_getFunctionClosedir(c)(c, dir);
}
// The next entry's name (NULL at the end) and whether it is a file (1), a directory (2), or
// anything else (0).
static inline const char *standby_smbc_readdir(SMBCCTX *c, SMBCFILE *dir, int *kind) {
    struct smbc_dirent *entry = smbc_getFunctionReaddir(c)(c, dir);
    if (entry == NULL) return NULL;
    *kind = entry->smbc_type == SMBC_FILE ? 1 : entry->smbc_type == SMBC_DIR ? 2 : 0;
    return entry->name;
}
static inline int standby_errno(void) { return errno; }
static inline void standby_set_errno(int value) { errno = value; }
#endif
