/* Log lines in JSON, parsed by Python's json module (see json.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "base.h"
#include "files.h"
#include "json.h"

char *json_fields(const char *const *lines, size_t n)
{
    char path[4096], cmd[8400];
    snprintf(path, sizeof(path), "%s/json-lines.txt", test_tmpdir());
    FILE *f = fopen(path, "w");
    if (f == NULL)
        test_fail("cannot write %s: %s", path, strerror(errno));
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\n", lines[i]);
    if (fclose(f) != 0)
        test_fail("cannot write %s: %s", path, strerror(errno));
    const char *top = getenv("top_srcdir");
    snprintf(cmd, sizeof(cmd),
             "command -v python3 >/dev/null || exit 127; "
             "exec timeout 10 python3 '%s/tests/common/json-fields.py' '%s' 2>&1",
             top != NULL ? top : ".", path);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        test_fail("popen: %s", strerror(errno));
    char *out = read_all(p, 16 * MIB);
    int status = pclose(p);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
        free(out);
        return NULL;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "---- the lines ----\n");
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "%s\n", lines[i]);
        test_fail("json-fields.py (status 0x%x): %s", (unsigned)status, out);
    }
    return out;
}

const char *json_fields_line(const char *out, size_t n)
{
    static char *copy;
    for (size_t i = 0; i < n && out != NULL; i++) {
        out = strchr(out, '\n');
        if (out != NULL)
            out++;
    }
    if (out == NULL || *out == '\0')
        return NULL;
    size_t len = strcspn(out, "\n");
    free(copy);
    copy = xmalloc(len + 1);
    memcpy(copy, out, len);
    copy[len] = '\0';
    return copy;
}

void json_expect_fields(const char *fields, const char *want)
{
    const char *g = fields, *w = want;
    for (;;) {
        size_t glen = strcspn(g, "\t\n"), wlen = strcspn(w, "\t");
        bool any = wlen > 0 && w[wlen - 1] == '*';
        bool same = any ? glen >= wlen - 1 && memcmp(g, w, wlen - 1) == 0
                        : glen == wlen && memcmp(g, w, wlen) == 0;
        if (!same)
            test_fail(
                "field \"%.*s\" where \"%.*s\" was expected\n  got:  %.*s\n  want: %s",
                (int)glen, g, (int)wlen, w, (int)strcspn(fields, "\n"), fields, want);
        bool gend = g[glen] != '\t', wend = w[wlen] != '\t';
        if (gend || wend) {
            if (gend != wend)
                test_fail("%s fields\n  got:  %.*s\n  want: %s",
                          gend ? "missing" : "more", (int)strcspn(fields, "\n"), fields,
                          want);
            return;
        }
        g += glen + 1;
        w += wlen + 1;
    }
}
