#ifndef STANDBY_CSMBCLIENTHOOKS_H
#define STANDBY_CSMBCLIENTHOOKS_H

/// Whether libsmbclient said, on this thread since the last call, that the server cannot
/// encrypt the session; clears the flag.
int standby_smb_take_encryption_refused(void);

/// Where libsmbclient's printed messages go instead of standard output (NULL: dropped).
void standby_smb_set_message_sink(void (*sink)(const char *message));

#endif
