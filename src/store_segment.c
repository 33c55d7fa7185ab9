/*
** store_segment.c — data_<name>.npkseg, the JSON manifest NumPack 0.7 writes
** for an array stored as several segment files:
**
**   {"version":1,"segments":[{"file":"...","rows":N,"bytes":N}, ...]}
**
** A small strict JSON reader: unknown keys are skipped whatever their value,
** anything malformed is NPK_CORRUPT naming the manifest.  Segment paths must
** stay inside the store directory.
*/
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

/* Parser state over the manifest text. */
typedef struct Json Json;
struct Json {
  const char *p;   /* next character */
  const char *end; /* end of the text */
  int depth;       /* nesting, bounded against stack exhaustion */
};

static void ws(Json *j) {
  while (j->p < j->end &&
         (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
    j->p++;
}

static int eat(Json *j, char c) {
  ws(j);
  if (j->p < j->end && *j->p == c) {
    j->p++;
    return 1;
  }
  return 0;
}

/* A JSON string; the decoded text goes to *OUT (malloc'd) if OUT. */
static int str(Json *j, char **out) {
  NpkBuf b = {0};
  ws(j);
  if (j->p >= j->end || *j->p != '"') return 0;
  j->p++;
  while (j->p < j->end && *j->p != '"') {
    unsigned char c = (unsigned char)*j->p++;
    if (c < 0x20) goto fail;
    if (c == '\\') {
      if (j->p >= j->end) goto fail;
      c = (unsigned char)*j->p++;
      switch (c) {
        case '"':
        case '\\':
        case '/': break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': {
          unsigned cp = 0;
          unsigned char u[3];
          int k;
          if (j->end - j->p < 4) goto fail;
          for (int i = 0; i < 4; i++) {
            char h = *j->p++;
            cp <<= 4;
            if (h >= '0' && h <= '9') cp |= (unsigned)(h - '0');
            else if (h >= 'a' && h <= 'f') cp |= (unsigned)(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') cp |= (unsigned)(h - 'A' + 10);
            else goto fail;
          }
          /* Paths never need surrogates or NUL: refuse rather than guess. */
          if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF)) goto fail;
          if (cp < 0x80) u[0] = (unsigned char)cp, k = 1;
          else if (cp < 0x800)
            u[0] = (unsigned char)(0xC0 | cp >> 6),
            u[1] = (unsigned char)(0x80 | (cp & 0x3F)), k = 2;
          else
            u[0] = (unsigned char)(0xE0 | cp >> 12),
            u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F)),
            u[2] = (unsigned char)(0x80 | (cp & 0x3F)), k = 3;
          npk_buf_put(&b, u, (size_t)k);
          continue;
        }
        default: goto fail;
      }
    }
    npk_buf_put(&b, &c, 1);
  }
  if (j->p >= j->end) goto fail;
  j->p++;
  npk_buf_u8(&b, 0);
  if (b.oom) goto fail;
  if (out) *out = (char *)b.p;
  else npk_buf_free(&b);
  return 1;
fail:
  npk_buf_free(&b);
  return 0;
}

/* A non-negative integer that fits in u64. */
static int json_uint(Json *j, uint64_t *v) {
  uint64_t x = 0;
  const char *s;
  ws(j);
  s = j->p;
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
    unsigned d = (unsigned)(*j->p - '0');
    if (x > (UINT64_MAX - d) / 10) return 0;
    x = x * 10 + d;
    j->p++;
  }
  if (j->p == s || (j->p - s > 1 && *s == '0')) return 0;
  if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E')) return 0;
  *v = x;
  return 1;
}

static int digits(Json *j) {
  const char *s = j->p;
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
  return j->p > s;
}

/* Any JSON number: -?digits[.digits][(e|E)[+-]digits]. */
static int number(Json *j) {
  if (j->p < j->end && *j->p == '-') j->p++;
  if (!digits(j)) return 0;
  if (j->p < j->end && *j->p == '.') {
    j->p++;
    if (!digits(j)) return 0;
  }
  if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
    j->p++;
    if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
    if (!digits(j)) return 0;
  }
  return 1;
}

/* Skip any JSON value. */
static int skip(Json *j) {
  ws(j);
  if (j->p >= j->end || ++j->depth > 64) return 0;
  if (*j->p == '"') {
    j->depth--;
    return str(j, NULL);
  }
  if (*j->p == '{' || *j->p == '[') {
    char close = *j->p == '{' ? '}' : ']';
    int obj = *j->p == '{';
    j->p++;
    if (!eat(j, close)) {
      do {
        if (obj && (!str(j, NULL) || !eat(j, ':'))) return 0;
        if (!skip(j)) return 0;
      } while (eat(j, ','));
      if (!eat(j, close)) return 0;
    }
    j->depth--;
    return 1;
  }
  {
    static const char *const words[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
      size_t n = strlen(words[i]);
      if ((size_t)(j->end - j->p) >= n && memcmp(j->p, words[i], n) == 0) {
        j->p += n;
        j->depth--;
        return 1;
      }
    }
  }
  j->depth--;
  return number(j);
}

/* One {"file":..,"rows":..,"bytes":..} object. */
static int segment(Json *j, NpkSegEntry *s) {
  int have = 0;
  if (!eat(j, '{')) return 0;
  if (!eat(j, '}')) {
    do {
      char *key = NULL;
      int ok;
      if (!str(j, &key) || !eat(j, ':')) {
        npk_free(key);
        return 0;
      }
      if (strcmp(key, "file") == 0 && !(have & 1)) {
        ok = str(j, &s->file);
        have |= 1;
      } else if (strcmp(key, "rows") == 0 && !(have & 2)) {
        ok = json_uint(j, &s->rows);
        have |= 2;
      } else if (strcmp(key, "bytes") == 0 && !(have & 4)) {
        ok = json_uint(j, &s->bytes);
        have |= 4;
      } else {
        ok = skip(j);
      }
      npk_free(key);
      if (!ok) return 0;
    } while (eat(j, ','));
    if (!eat(j, '}')) return 0;
  }
  return have == 7;
}

/* The "segments" array; *PSEGS grows as entries are read, so the caller
** frees what was read even on failure. */
static int segments(Json *j, NpkSegEntry **psegs, int *pn, const char **why) {
  int cap = 0, ok; /* called once, with nothing read yet */
  if (!eat(j, '[')) return 0;
  if (eat(j, ']')) return 1;
  do {
    if (*pn == cap) {
      int c = cap ? cap * 2 : 4;
      NpkSegEntry *q = npk_realloc(*psegs, (size_t)c * sizeof *q);
      if (!q) {
        *why = "out of memory";
        return 0;
      }
      *psegs = q;
      cap = c;
    }
    memset(&(*psegs)[*pn], 0, sizeof **psegs);
    ok = segment(j, &(*psegs)[*pn]);
    (*pn)++;
    if (!ok) *why = "segment entry needs file, rows and bytes";
  } while (ok && eat(j, ','));
  return ok && eat(j, ']');
}

int npk_seg_parse(const char *text, size_t n, NpkSegEntry **pp, int *pn,
                  const char *path, NpkErr *e) {
  Json j = {text, text + n, 0};
  NpkSegEntry *segs = NULL;
  int nseg = 0, have = 0;
  const char *why = "not a JSON object";
  uint64_t version = 0;

  *pp = NULL;
  *pn = 0;
  if (!eat(&j, '{')) goto fail;
  if (!eat(&j, '}')) {
    do {
      char *key = NULL;
      int ok;
      why = "malformed JSON";
      if (!str(&j, &key) || !eat(&j, ':')) {
        npk_free(key);
        goto fail;
      }
      if (strcmp(key, "version") == 0 || strcmp(key, "segments") == 0) {
        int bit = key[0] == 'v' ? 1 : 2;
        if (have & bit) {
          ok = 0;
          why = "a key appears twice";
        } else if (bit == 1) {
          ok = json_uint(&j, &version);
        } else {
          ok = segments(&j, &segs, &nseg, &why);
        }
        have |= bit;
      } else {
        ok = skip(&j);
      }
      npk_free(key);
      if (!ok) goto fail;
    } while (eat(&j, ','));
    if (!eat(&j, '}')) goto fail;
  }
  ws(&j);
  why = "trailing text after the manifest";
  if (j.p != j.end) goto fail;
  why = "missing version or segments";
  if (have != 3) goto fail;
  why = "unsupported manifest version";
  if (version != 1) goto fail;
  for (int i = 0; i < nseg; i++) {
    why = "segment file path leaves the store directory";
    if (!npk_relpath_valid(segs[i].file)) goto fail;
  }
  *pp = segs;
  *pn = nseg;
  return NPK_OK;
fail:
  npk_seg_free(segs, nseg);
  return npk_err(e, NPK_CORRUPT, "%s is damaged: %s", path, why);
}

void npk_seg_free(NpkSegEntry *s, int n) {
  if (!s) return;
  for (int i = 0; i < n; i++) npk_free(s[i].file);
  npk_free(s);
}
