/*
 * A resolver for the fuzz targets: the upstream parser resolves host
 * names, and a fuzzer must neither wait on DNS nor depend on it.  This
 * getaddrinfo() (the program's own, so it is the one addr.c calls) hands
 * numeric lookups (AI_NUMERICHOST) to the C library's, and answers every
 * name with a fixed loopback address: 127.0.0.1, or ::1 for a name of odd
 * length, so that both families reach the code after the lookup.  The
 * answer comes from the C library itself (a numeric lookup), so its
 * freeaddrinfo() frees it.  Include it in one file of each target.
 */
#ifndef FUZZ_RESOLVER_H
#define FUZZ_RESOLVER_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <dlfcn.h>
#include <netdb.h>
#include <stddef.h>
#include <string.h>

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *,
                              struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    static getaddrinfo_fn real;
    struct addrinfo fixed;

    if (real == NULL)
        real = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    if (real == NULL)
        return EAI_SYSTEM;
    if (node == NULL || (hints != NULL && (hints->ai_flags & AI_NUMERICHOST)))
        return real(node, service, hints, res);
    memset(&fixed, 0, sizeof(fixed));
    if (hints != NULL)
        fixed = *hints;
    fixed.ai_flags |= AI_NUMERICHOST;
    fixed.ai_family = AF_UNSPEC;
    return real(strlen(node) % 2 == 0 ? "127.0.0.1" : "::1", service, &fixed, res);
}

#endif
