/*
** fuzz_segment.c — fuzz target for npk_seg_parse, the reader of the JSON
** manifest data_<name>.npkseg of a segmented array (SPEC §2).
**
** Beyond "no crash":
**   - a refused manifest returns no entries and says NPK_CORRUPT with a
**     message naming the file;
**   - every accepted entry has a file path that stays inside the store;
**   - the entries, written back as JSON (once compact, once with the keys
**     reversed, white space and an unknown key of every JSON kind), parse
**     back to the same entries.
*/
#include <inttypes.h>
#include <string.h>

#include "fuzz.h"
#include "store_int.h"

const char npk_fuzz_target[] = "segment";

#define MANIFEST "data_a.npkseg"

/* Append S to B as a JSON string literal. */
static void put_json_string(NpkBuf *b, const char *s) {
  npk_buf_put(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      npk_buf_put(b, "\\", 1);
      npk_buf_put(b, s, 1);
    } else if (c < 0x20) {
      char esc[8];
      snprintf(esc, sizeof esc, "\\u%04x", c);
      npk_buf_put(b, esc, 6);
    } else {
      npk_buf_put(b, s, 1);
    }
  }
  npk_buf_put(b, "\"", 1);
}

static void put_text(NpkBuf *b, const char *s) { npk_buf_put(b, s, strlen(s)); }

static void put_uint(NpkBuf *b, uint64_t v) {
  char num[24];
  snprintf(num, sizeof num, "%" PRIu64, v);
  put_text(b, num);
}

/* Write the entries as a manifest; FANCY varies everything that may vary. */
static void write_manifest(NpkBuf *b, const NpkSegEntry *s, int n, int fancy) {
  if (fancy)
    put_text(b, " {\n \"extra\" : {\"a\": [1, -2.5e+3, true, false, null, "
                "\"x\\u00e9\\n\"], \"b\": {}},\t\"segments\" : [ ");
  else
    put_text(b, "{\"version\":1,\"segments\":[");
  for (int i = 0; i < n; i++) {
    if (i) put_text(b, fancy ? " ,\r\n " : ",");
    if (fancy) {
      put_text(b, "{ \"bytes\" : ");
      put_uint(b, s[i].bytes);
      put_text(b, ", \"note\": [[], {}], \"rows\":");
      put_uint(b, s[i].rows);
      put_text(b, " ,\"file\":");
      put_json_string(b, s[i].file);
      put_text(b, " }");
    } else {
      put_text(b, "{\"file\":");
      put_json_string(b, s[i].file);
      put_text(b, ",\"rows\":");
      put_uint(b, s[i].rows);
      put_text(b, ",\"bytes\":");
      put_uint(b, s[i].bytes);
      put_text(b, "}");
    }
  }
  put_text(b, fancy ? " ] , \"version\" : 1 }\n" : "]}");
}

/* Parse what write_manifest wrote; it must give the same entries. */
static void round_trip(const NpkSegEntry *s, int n, int fancy) {
  NpkBuf b = {0};
  NpkSegEntry *t = NULL;
  NpkErr e;
  int nt = -1, rc;
  write_manifest(&b, s, n, fancy);
  if (b.oom) {
    npk_buf_free(&b);
    return;
  }
  memset(&e, 0, sizeof e);
  rc = npk_seg_parse((const char *)b.p, b.n, &t, &nt, MANIFEST, &e);
  if (rc != NPK_OK)
    fprintf(stderr, "re-parse of %.*s: %s\n", (int)b.n, (const char *)b.p,
            e.msg);
  FUZZ_CHECK(rc == NPK_OK);
  FUZZ_CHECK(nt == n);
  for (int i = 0; i < n; i++) {
    FUZZ_CHECK(strcmp(t[i].file, s[i].file) == 0);
    FUZZ_CHECK(t[i].rows == s[i].rows);
    FUZZ_CHECK(t[i].bytes == s[i].bytes);
  }
  npk_seg_free(t, nt);
  npk_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  NpkSegEntry *s = (NpkSegEntry *)&s;  /* must be overwritten */
  NpkErr e;
  int n = -1, rc;

  memset(&e, 0, sizeof e);
  rc = npk_seg_parse((const char *)data, size, &s, &n, MANIFEST, &e);
  if (rc != NPK_OK) {
    FUZZ_CHECK(rc == NPK_CORRUPT || rc == NPK_NOMEM);
    FUZZ_CHECK(s == NULL && n == 0);
    FUZZ_CHECK(e.rc == rc && strstr(e.msg, MANIFEST) != NULL);
    return 0;
  }
  FUZZ_CHECK(n >= 0);
  FUZZ_CHECK(n == 0 || s != NULL);
  for (int i = 0; i < n; i++) {
    FUZZ_CHECK(s[i].file != NULL);
    FUZZ_CHECK(npk_relpath_valid(s[i].file));
  }
  round_trip(s, n, 0);
  round_trip(s, n, 1);
  npk_seg_free(s, n);
  return 0;
}
