#ifndef STANDBY_CTLS_SHIM_H
#define STANDBY_CTLS_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/bio.h>
#include <stdlib.h>
#include <string.h>

// Several OpenSSL calls are macros over SSL_ctrl / BIO_ctrl, which Swift cannot see: each gets a
// typed wrapper here.
static inline long standby_ssl_set_sni(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}
static inline long standby_ssl_ctx_min_tls12(SSL_CTX *ctx) {
    return SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
}

// An X509 name as an RFC 2253 string ("CN=pool01.contoso.com,O=Contoso"), malloc'd; the caller
// frees it. NULL when the name cannot be printed.
static inline char *standby_x509_name(const X509_NAME *name) {
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) return NULL;
    if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) < 0) { BIO_free(bio); return NULL; }
    char *data = NULL;
    long length = BIO_get_mem_data(bio, &data);
    char *copy = NULL;
    if (length >= 0) {
        copy = malloc((size_t)length + 1);
        if (copy != NULL) { memcpy(copy, data, (size_t)length); copy[length] = 0; }
    }
    BIO_free(bio);
    return copy;
}

// An ASN1 time as seconds since the epoch (UTC); 0 on success, -1 when it cannot be read.
static inline int standby_asn1_time_epoch(const ASN1_TIME *time, long long *epoch) {
    struct tm parts;
    memset(&parts, 0, sizeof parts);
    if (ASN1_TIME_to_tm(time, &parts) != 1) return -1;
    *epoch = (long long)timegm(&parts);
    return 0;
}
#endif
