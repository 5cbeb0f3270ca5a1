/*
 * A daemon built without TLS (configure --with-tls=no, or no OpenSSL):
 * every TLS setting is refused by -t and at start, saying "built without
 * TLS" at the setting's file:line, rather than taken and ignored.  Built
 * only without TLS (test-tls covers the other build).
 */
#ifdef HAVE_CONFIG_H
#include "autoconf.h"
#endif

#include <stdio.h>
#include <string.h>

#include "harness.h"

/* A listener with `tls`, `upstream_tls` or `sni_routes`: -t exits 1 naming
 * the line and "built without TLS", and so does a start. */
static void test_tls_settings_refused(void **state)
{
    (void)state;
    static const struct {
        const char *what, *conf;
        int line;
    } cases[] = {
        {"tls",
         "listeners = ( {\n  name = \"t\";\n  listen = [ \"127.0.0.1:0\" ];\n"
         "  tls = { certificate = \"cert.pem\"; key = \"key.pem\"; };\n} );\n",
         4},
        {"upstream_tls",
         "listeners = ( {\n  name = \"p\";\n  listen = [ \"127.0.0.1:0\" ];\n"
         "  mode = \"proxy\";\n  upstreams = [ \"127.0.0.1:9\" ];\n"
         "  upstream_tls = { ca = \"ca.pem\"; };\n} );\n",
         6},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        expect_conf_error(cases[i].what, cases[i].conf, cases[i].line,
                          "built without TLS");
        char out[4096];
        int rc = echod_run(out, sizeof(out), "-f", "-c", write_conf(cases[i].conf),
                           (char *)NULL);
        if (rc == 0 || strstr(out, "built without TLS") == NULL)
            fail_msg("%s: a start gave exit %d: %s", cases[i].what, rc, out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_tls_settings_refused, teardown_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
