#ifndef STANDBY_CGSSAPI_SHIM_H
#define STANDBY_CGSSAPI_SHIM_H
// MIT Kerberos (libkrb5-dev): its GSSAPI (pkg-config krb5-gssapi), for GSS-TSIG (RFC 3645), and
// one call of libkrb5 itself: the KDC's error, which carries its clock, for a skew in plain words.
#include <gssapi/gssapi.h>
#include <gssapi/gssapi_krb5.h>
#include <gssapi/gssapi_ext.h>
#include <krb5/krb5.h>

// The OIDs and name types are extern variables or macros Swift cannot use directly.
static inline gss_OID standby_gss_mech_krb5(void) { return (gss_OID)gss_mech_krb5; }
static inline gss_OID standby_gss_nt_krb5_principal(void) { return (gss_OID)GSS_KRB5_NT_PRINCIPAL_NAME; }
static inline gss_OID standby_gss_nt_user_name(void) { return GSS_C_NT_USER_NAME; }
static inline OM_uint32 standby_gss_complete(void) { return GSS_S_COMPLETE; }
static inline OM_uint32 standby_gss_continue_needed(void) { return GSS_S_CONTINUE_NEEDED; }
static inline int standby_gss_error(OM_uint32 major) { return GSS_ERROR(major) ? 1 : 0; }
static inline OM_uint32 standby_gss_routine_error(OM_uint32 major) { return GSS_ROUTINE_ERROR(major); }
static inline OM_uint32 standby_gss_s_context_expired(void) { return GSS_S_CONTEXT_EXPIRED; }
static inline OM_uint32 standby_gss_s_credentials_expired(void) { return GSS_S_CREDENTIALS_EXPIRED; }
static inline OM_uint32 standby_gss_s_bad_sig(void) { return GSS_S_BAD_SIG; }
static inline OM_uint32 standby_gss_c_gss_code(void) { return GSS_C_GSS_CODE; }
static inline OM_uint32 standby_gss_c_mech_code(void) { return GSS_C_MECH_CODE; }
static inline OM_uint32 standby_gss_c_indefinite(void) { return GSS_C_INDEFINITE; }
static inline OM_uint32 standby_gss_flags(void) {
    return GSS_C_MUTUAL_FLAG | GSS_C_REPLAY_FLAG | GSS_C_SEQUENCE_FLAG | GSS_C_INTEG_FLAG;
}
#endif
