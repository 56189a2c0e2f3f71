// libsamba-util's d_printf prints on standard output. libsmbclient 4.17 calls it when the server
// cannot encrypt a session that asks for encryption ("Encryption required and server doesn't
// support SMB3 encryption - failing connect"), and then goes on with the session unencrypted,
// even when encryption is required. This definition in the executable takes the place of the
// library's (the dynamic linker binds the library's d_printf@SAMBA_UTIL_0.0.1 to it): the
// message goes to the log, never into `--json` on standard output, and the thread that asked
// learns that the session is not encrypted, so Standby refuses it where encryption is required.
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "CSMBClientHooks.h"

static __thread int encryption_refused;
static void (*message_sink)(const char *message);

int standby_smb_take_encryption_refused(void) {
    int refused = encryption_refused;
    encryption_refused = 0;
    return refused;
}

void standby_smb_set_message_sink(void (*sink)(const char *message)) { message_sink = sink; }

__attribute__((visibility("default"))) int d_printf(const char *format, ...) {
    char buffer[1024];
    va_list arguments;
    va_start(arguments, format);
    int length = vsnprintf(buffer, sizeof buffer, format, arguments);
    va_end(arguments);
    if (strstr(buffer, "doesn't support SMB3 encryption") != NULL || strstr(buffer, "doesn't support encryption") != NULL) {
        encryption_refused = 1;
    }
    void (*sink)(const char *) = message_sink;
    if (sink != NULL) sink(buffer);
    return length;
}
