/*
 * The contexts of tls.h as tls-context.c builds them and tls-session.c
 * uses them; OpenSSL's types, so only those two include this.
 */
#ifndef ECHOD_TLS_INTERNAL_H
#define ECHOD_TLS_INTERNAL_H

#include <openssl/ssl.h>
#include <pthread.h>

#include "tls.h"

struct tls_server {
    SSL_CTX **ctx;     /* one per certificate, [0] the default */
    X509 **leaf;       /* each one's leaf certificate (the context's) */
    time_t *not_after; /* when each expires */
    const char **file; /* each one's file (the configuration's string) */
    size_t nctx;
    size_t alpn_len;      /* ALPN's wire form: length-prefixed names */
    unsigned char alpn[]; /* our protocols, the preferred first */
};

/* Sessions to resume are kept per upstream address ("slot"), guarded by
 * mu: every worker connects through the same context. */
struct tls_client {
    SSL_CTX *ctx;
    bool verify;
    pthread_mutex_t mu;
    size_t nslots;
    SSL_SESSION *slot[]; /* the last session each address gave, or NULL */
};

/* The index of the SSL ex_data that holds a client session's slot + 1. */
int tls_slot_index(void);

#endif
