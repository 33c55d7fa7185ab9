/*
** npy.c — the NumPy .npy codec: a strict parser for .npy images (versions
** 1.0, 2.0 and 3.0), the writer of NumPy 1.24's exact version 1.0 header,
** and byte swapping for big-endian data.
**
** The format (NumPy's "format.py" documentation):
**
**   "\x93NUMPY"  major  minor  header-length  header  data
**
** The header length is a little-endian u16 in version 1.0 and a u32 in 2.0
** and 3.0.  The header is a Python dict literal (ASCII; Latin-1 in 2.0,
** UTF-8 in 3.0, which only matters inside strings we refuse anyway) with
** the keys 'descr', 'fortran_order' and 'shape', padded with spaces and
** ending in '\n' so that the data is aligned.  The data follows raw.
**
** The parser is a small hand-written recogniser of exactly the literal
** forms a .npy writer produces, not a Python evaluator: it accepts every
** header NumPy writes (including Python 2's "3L" integers) and refuses the
** rest with a message that says what was wrong.  It never reads outside
** the input, whatever the bytes.
**
** This file has no SQLite dependency; it is part of the engine layer.
*/
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dtype.h"
#include "npy.h"
#include "store_int.h"

#define NPK_NPY_MAGIC     "\223NUMPY" /* \x93 then "NUMPY" */
#define NPK_NPY_MAGIC_LEN 6
#define NPK_NPY_ALIGN     64 /* NumPy's ARRAY_ALIGN */
#define NPK_NPY_GROWTH    21 /* NumPy's GROWTH_AXIS_MAX_DIGITS */

/* Bytes of a descr quoted in an error message before it is cut short. */
#define NPK_NPY_QUOTE_MAX 40

/* Room for the longest dict text npk_npy_header formats: the fixed keys
** (about 60 bytes), 32 dimensions of up to 20 digits plus ", " each, and
** the growth padding. */
#define NPK_NPY_DICT_MAX 1024

/*
** Report a parse error in E: NPK_ERROR, with the message, so that a
** failing branch can say "return npk_npy_err(...)".
*/
static int npk_npy_err(NpkErr *e, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return npk_err(e, NPK_ERROR, "%s", msg);
}

/*
** Copy header text into BUF for quoting in a message.  The header is
** untrusted: control and non-ASCII bytes become '?' so that a message is
** always printable, and long text is cut with "...".
*/
static void npk_npy_quote(char *buf, size_t cap, const unsigned char *z,
                          size_t n) {
  size_t i, k = 0;
  int cut = n > NPK_NPY_QUOTE_MAX;
  if (cut) n = NPK_NPY_QUOTE_MAX;
  for (i = 0; i < n && k + 1 < cap; i++) {
    unsigned char c = z[i];
    buf[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
  }
  if (cut) {
    for (i = 0; i < 3 && k + 1 < cap; i++) buf[k++] = '.';
  }
  buf[k] = 0;
}

/* 1 if this machine stores integers big-endian; '=' descrs mean this. */
static int npk_host_big_endian(void) {
  const uint16_t one = 1;
  unsigned char b;
  memcpy(&b, &one, 1);
  return b == 0;
}

/* ---------------------------------------------------------------- header
** A cursor over the dict text.  Only ' ' and '\t' count as white space:
** they are all NumPy has ever written, and Python would reject other
** control characters outside strings in most places anyway. */
typedef struct NpkNpyScan NpkNpyScan;
struct NpkNpyScan {
  const unsigned char *z; /* header text */
  size_t n;               /* its length, excluding the final '\n' */
  size_t i;               /* read position */
  int allow_long;         /* accept Python 2's "3L" integers */
  NpkErr *e;              /* where messages go */
};

static void npk_scan_space(NpkNpyScan *s) {
  while (s->i < s->n && (s->z[s->i] == ' ' || s->z[s->i] == '\t')) s->i++;
}

/* The next byte, or -1 at the end of the text. */
static int npk_scan_peek(NpkNpyScan *s) {
  return s->i < s->n ? s->z[s->i] : -1;
}

/* Report what was found where something else was expected. */
static int npk_scan_expected(NpkNpyScan *s, const char *what) {
  char found[NPK_NPY_QUOTE_MAX + 8];
  if (s->i >= s->n) {
    return npk_npy_err(s->e, "npy: header ends where %s was expected", what);
  }
  npk_npy_quote(found, sizeof found, s->z + s->i, s->n - s->i);
  return npk_npy_err(s->e, "npy: malformed header: expected %s at \"%s\"", what,
                     found);
}

/*
** A Python string literal in single or double quotes.  The keys and the
** descrs a .npy header holds never need escapes, so a backslash (and a
** line break, which ends a Python string with an error) is refused rather
** than interpreted.  On success *PZ and *PN are the text between the quotes.
*/
static int npk_scan_string(NpkNpyScan *s, const unsigned char **pz,
                           size_t *pn) {
  int q = npk_scan_peek(s);
  size_t start;
  if (q != '\'' && q != '"') return npk_scan_expected(s, "a quoted string");
  start = ++s->i;
  while (s->i < s->n && s->z[s->i] != q) {
    if (s->z[s->i] == '\\') {
      return npk_npy_err(s->e,
                         "npy: escapes in header strings are not supported");
    }
    if (s->z[s->i] == '\n' || s->z[s->i] == '\r') {
      return npk_npy_err(s->e, "npy: malformed header: line break in a string");
    }
    s->i++;
  }
  if (s->i >= s->n) {
    return npk_npy_err(s->e, "npy: malformed header: unterminated string");
  }
  *pz = s->z + start;
  *pn = s->i - start;
  s->i++; /* the closing quote */
  return 0;
}

/* 1 if C can continue a Python identifier (so "Falsey" is not "False"). */
static int npkIsIdentChar(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c >= 0x80;
}

/* fortran_order's value: exactly True or False (NumPy refuses 0 and 1). */
static int npk_scan_bool(NpkNpyScan *s, int *pb) {
  static const struct {
    const char *z;
    int v;
  } aWord[] = {
      {"True", 1},
      {"False", 0},
  };
  size_t k;
  for (k = 0; k < sizeof(aWord) / sizeof(aWord[0]); k++) {
    size_t len = strlen(aWord[k].z);
    if (s->n - s->i >= len && memcmp(s->z + s->i, aWord[k].z, len) == 0 &&
        !(s->i + len < s->n && npkIsIdentChar(s->z[s->i + len]))) {
      s->i += len;
      *pb = aWord[k].v;
      return 0;
    }
  }
  return npk_scan_expected(s, "True or False for 'fortran_order'");
}

/*
** One dimension: a non-negative decimal integer that fits NumPy's intp
** (int64), optionally followed by 'L' in version 1.0 and 2.0 headers,
** which Python 2 wrote for longs and NumPy still strips.  A leading zero
** is refused, as Python 3 refuses it ("07" would be octal to Python 2).
*/
static int npkScanDim(NpkNpyScan *s, uint64_t *pv) {
  uint64_t v = 0;
  size_t start = s->i;
  int c = npk_scan_peek(s);
  if (c == '-') {
    return npk_npy_err(s->e, "npy: shape has a negative dimension");
  }
  if (c < '0' || c > '9') return npk_scan_expected(s, "a dimension");
  while ((c = npk_scan_peek(s)) >= '0' && c <= '9') {
    if (v > ((uint64_t)INT64_MAX - (uint64_t)(c - '0')) / 10) {
      return npk_npy_err(s->e,
                         "npy: shape has a dimension too large for NumPy");
    }
    v = v * 10 + (uint64_t)(c - '0');
    s->i++;
  }
  if (s->z[start] == '0' && s->i - start > 1) {
    return npk_npy_err(s->e,
                       "npy: malformed header: dimension with a leading zero");
  }
  if (s->allow_long && npk_scan_peek(s) == 'L') s->i++;
  if (s->i < s->n && npkIsIdentChar(s->z[s->i])) {
    return npk_scan_expected(s, "',' or ')' after a dimension");
  }
  *pv = v;
  return 0;
}

/*
** The shape tuple: "()", "(5,)", "(3, 4)", "(3, 4,)".  A single dimension
** needs its comma: "(5)" is the integer 5 to Python, and NumPy refuses it.
*/
static int npk_scan_shape(NpkNpyScan *s, uint32_t *pNdim, uint64_t *aShape) {
  uint32_t nd = 0;
  int rc;
  int comma = 0; /* a comma followed the last dimension */
  if (npk_scan_peek(s) != '(') {
    return npk_scan_expected(s, "a tuple for 'shape'");
  }
  s->i++;
  npk_scan_space(s);
  while (npk_scan_peek(s) != ')') {
    uint64_t v = 0;
    if (nd > 0 && !comma) return npk_scan_expected(s, "',' or ')' in 'shape'");
    if (nd >= NPK_MAX_NDIM_NPY) {
      return npk_npy_err(s->e, "npy: more than %d dimensions are not supported",
                         NPK_MAX_NDIM_NPY);
    }
    rc = npkScanDim(s, &v);
    if (rc) return rc;
    aShape[nd++] = v;
    npk_scan_space(s);
    comma = 0;
    if (npk_scan_peek(s) == ',') {
      comma = 1;
      s->i++;
      npk_scan_space(s);
    }
  }
  if (nd == 1 && !comma) {
    return npk_npy_err(s->e,
                       "npy: malformed header: 'shape' is not a tuple "
                       "(a single dimension needs a trailing comma)");
  }
  s->i++; /* ')' */
  *pNdim = nd;
  return 0;
}

/*
** Skip a bracketed value starting at '[' or '(' (a structured or sub-array
** descr) so that it can be quoted in the refusal.  Strings inside may hold
** brackets, so they are skipped whole.
*/
static int npk_scan_bracketed(NpkNpyScan *s) {
  int depth = 0;
  int q = 0; /* the quote of the string we are in, or 0 */
  while (s->i < s->n) {
    int c = s->z[s->i++];
    if (q) {
      /* Field names may hold anything; skip an escaped character whole so
      ** that \' does not end the string. */
      if (c == '\\' && s->i < s->n) s->i++;
      else if (c == q) q = 0;
    } else if (c == '\'' || c == '"') {
      q = c;
    } else if (c == '[' || c == '(') {
      depth++;
    } else if ((c == ']' || c == ')') && --depth == 0) {
      return 0;
    }
  }
  return npk_npy_err(s->e, "npy: malformed header: unterminated 'descr'");
}

/* -------------------------------------------------------------- descr */

/* What kind of data a NumPy type character stands for, for messages. */
static const char *npk_kind_name(int c) {
  switch (c) {
    case 'O': return "objects";
    case 'U':
    case 'S':
    case 'a': return "strings";
    case 'V': return "raw void data";
    case 'M': return "datetimes";
    case 'm': return "timedeltas";
    case 'b':
    case '?': return "no bool of that size";
    case 'i':
    case 'u': return "no integer of that size";
    case 'f': return "no float of that size";
    case 'c': return "no complex of that size";
    default: return "unknown type";
  }
}

/*
** Map a descr string to a dtype code.  Accepted: a byte-order character
** ('<' little, '>' big, '=' this machine's, '|' not applicable) or none,
** then "?" or a short code "b1", "u1" .. "c16".  NumPy only ever writes
** '<', '>' and '|' (with '|' for exactly the one-byte types), but it reads
** the others too, and they are unambiguous.  A '|' on a multi-byte type
** is refused: the byte order of such data is unknown.
*/
static int npk_parse_descr(const unsigned char *z, size_t n, int *p_dtype,
                           int *p_big, NpkErr *e) {
  char quoted[NPK_NPY_QUOTE_MAX + 8];
  char order = 0;
  const unsigned char *t = z;
  size_t nt = n;
  int dtype = -1;
  int i;

  npk_npy_quote(quoted, sizeof quoted, z, n);
  if (nt > 0 && (t[0] == '<' || t[0] == '>' || t[0] == '=' || t[0] == '|')) {
    order = (char)t[0];
    t++;
    nt--;
  }
  if (nt == 1 && t[0] == '?') {
    dtype = NPK_BOOL;
  } else {
    for (i = 0; i < NPK_NDTYPE; i++) {
      /* dtype.h's descrs are one order character and the short code. */
      const char *z_short = npk_dtype_descr(i) + 1;
      if (strlen(z_short) == nt && memcmp(z_short, t, nt) == 0) {
        dtype = i;
        break;
      }
    }
  }
  if (dtype < 0) {
    return npk_npy_err(e, "npy: dtype '%s' is not supported (%s)", quoted,
                       nt > 0 ? npk_kind_name(t[0]) : "empty descr");
  }
  if (npk_dtype_size(dtype) == 1) {
    *p_big = 0; /* no byte order: nothing to convert */
  } else if (order == '|') {
    return npk_npy_err(e,
                       "npy: dtype '%s' has no byte order; "
                       "a %d-byte type needs '<' or '>'",
                       quoted, npk_dtype_size(dtype));
  } else if (order == '>') {
    *p_big = 1;
  } else if (order == '<') {
    *p_big = 0;
  } else {
    *p_big = npk_host_big_endian(); /* '=' or none: the reader's order */
  }
  *p_dtype = dtype;
  return 0;
}

/* ---------------------------------------------------------------- parse */

/* Key bits, for spotting missing and repeated keys. */
#define NPK_NPY_KEY_DESCR   0x01
#define NPK_NPY_KEY_FORTRAN 0x02
#define NPK_NPY_KEY_SHAPE   0x04
#define NPK_NPY_KEY_ALL     0x07

/*
** Parse the dict text Z (N bytes, the final '\n' already removed).  Fills
** dtype, big_endian, ndim and shape of P and *p_fortran.
*/
static int npk_parse_dict(const unsigned char *z, size_t n, int allow_long,
                          NpkNpy *p, int *p_fortran, NpkErr *e) {
  static const struct {
    const char *z_key;
    int bit;
  } a_key[] = {
      {"descr", NPK_NPY_KEY_DESCR},
      {"fortran_order", NPK_NPY_KEY_FORTRAN},
      {"shape", NPK_NPY_KEY_SHAPE},
  };
  NpkNpyScan s;
  int seen = 0;
  int rc;

  s.z = z;
  s.n = n;
  s.i = 0;
  s.allow_long = allow_long;
  s.e = e;

  npk_scan_space(&s);
  if (npk_scan_peek(&s) != '{') return npk_scan_expected(&s, "'{'");
  s.i++;
  for (;;) {
    const unsigned char *z_key;
    size_t n_key;
    int bit = 0;
    size_t k;

    npk_scan_space(&s);
    if (npk_scan_peek(&s) == '}') break;
    rc = npk_scan_string(&s, &z_key, &n_key);
    if (rc) return rc;
    for (k = 0; k < sizeof(a_key) / sizeof(a_key[0]); k++) {
      if (strlen(a_key[k].z_key) == n_key &&
          memcmp(a_key[k].z_key, z_key, n_key) == 0) {
        bit = a_key[k].bit;
      }
    }
    if (bit == 0 || (seen & bit)) {
      /* Python would keep the last of two equal keys; no writer repeats
      ** one, so a repeat means a damaged or hand-made header. */
      char quoted[NPK_NPY_QUOTE_MAX + 8];
      npk_npy_quote(quoted, sizeof quoted, z_key, n_key);
      return npk_npy_err(e,
                         bit ? "npy: key '%s' appears twice"
                             : "npy: unexpected key '%s' in header",
                         quoted);
    }
    seen |= bit;
    npk_scan_space(&s);
    if (npk_scan_peek(&s) != ':') return npk_scan_expected(&s, "':'");
    s.i++;
    npk_scan_space(&s);

    if (bit == NPK_NPY_KEY_DESCR) {
      int c = npk_scan_peek(&s);
      if (c == '[' || c == '(') {
        char quoted[NPK_NPY_QUOTE_MAX + 8];
        size_t start = s.i;
        rc = npk_scan_bracketed(&s);
        if (rc) return rc;
        npk_npy_quote(quoted, sizeof quoted, z + start, s.i - start);
        return npk_npy_err(e, "npy: dtype %s is not supported (%s)", quoted,
                           c == '[' ? "structured" : "sub-array");
      } else {
        const unsigned char *z_descr;
        size_t n_descr;
        rc = npk_scan_string(&s, &z_descr, &n_descr);
        if (rc) return rc;
        rc = npk_parse_descr(z_descr, n_descr, &p->dtype, &p->big_endian, e);
        if (rc) return rc;
      }
    } else if (bit == NPK_NPY_KEY_FORTRAN) {
      rc = npk_scan_bool(&s, p_fortran);
      if (rc) return rc;
    } else {
      rc = npk_scan_shape(&s, &p->ndim, p->shape);
      if (rc) return rc;
    }

    npk_scan_space(&s);
    if (npk_scan_peek(&s) == ',') {
      s.i++;
    } else if (npk_scan_peek(&s) != '}') {
      return npk_scan_expected(&s, "',' or '}'");
    }
  }
  s.i++; /* '}' */
  npk_scan_space(&s);
  if (s.i < s.n) return npk_scan_expected(&s, "padding after the header dict");

  if (seen != NPK_NPY_KEY_ALL) {
    const char *z_missing = !(seen & NPK_NPY_KEY_DESCR)     ? "descr"
                            : !(seen & NPK_NPY_KEY_FORTRAN) ? "fortran_order"
                                                            : "shape";
    return npk_npy_err(e, "npy: header lacks '%s'", z_missing);
  }
  return 0;
}

/* Little-endian u16 and u32 from unaligned bytes. */
static uint32_t get_u16le(const unsigned char *a) {
  return (uint32_t)a[0] | (uint32_t)a[1] << 8;
}
static uint32_t get_u32le(const unsigned char *a) {
  return (uint32_t)a[0] | (uint32_t)a[1] << 8 | (uint32_t)a[2] << 16 |
         (uint32_t)a[3] << 24;
}

int npk_npy_parse(const void *blob, size_t n, NpkNpy *out, NpkErr *e) {
  const unsigned char *a = (const unsigned char *)blob;
  NpkNpy p;
  size_t n_prefix;   /* magic, version and header length */
  uint64_t n_header; /* header length from the prefix */
  uint64_t n_data;   /* bytes after the header */
  uint64_t n_item;
  uint64_t n_nonzero = 1; /* product of the non-zero dimensions */
  int fortran = 0;
  int n_big = 0; /* dimensions longer than 1 */
  int major, minor;
  uint32_t k;
  int rc;

  e->rc = NPK_OK;
  e->msg[0] = 0;
  if (a == 0 && n > 0) return npk_npy_err(e, "npy: no data");
  if (n < NPK_NPY_MAGIC_LEN ||
      memcmp(a, NPK_NPY_MAGIC, NPK_NPY_MAGIC_LEN) != 0) {
    /* A prefix of the magic is still "not .npy": the caller has it all. */
    return npk_npy_err(e, "npy: not a .npy image (no \\x93NUMPY magic)");
  }
  if (n < NPK_NPY_MAGIC_LEN + 2) {
    return npk_npy_err(e, "npy: truncated before the version");
  }
  major = a[6];
  minor = a[7];
  if (major == 1 && minor == 0) {
    n_prefix = 10;
  } else if ((major == 2 || major == 3) && minor == 0) {
    n_prefix = 12;
  } else {
    return npk_npy_err(e,
                       "npy: format version %d.%d is not supported "
                       "(1.0, 2.0 and 3.0 are)",
                       major, minor);
  }
  if (n < n_prefix) {
    return npk_npy_err(e, "npy: truncated in the header length");
  }
  n_header = n_prefix == 10 ? get_u16le(a + 8) : get_u32le(a + 8);
  if (n_header > n - n_prefix) {
    return npk_npy_err(
        e, "npy: truncated header (%" PRIu64 " bytes, %" PRIu64 " present)",
        n_header, (uint64_t)(n - n_prefix));
  }
  if (n_header == 0 || a[n_prefix + n_header - 1] != '\n') {
    return npk_npy_err(e,
                       "npy: malformed header: it does not end in a newline");
  }

  memset(&p, 0, sizeof p);
  p.dtype = -1;
  rc = npk_parse_dict(a + n_prefix, (size_t)n_header - 1, major < 3, &p,
                      &fortran, e);
  if (rc) return rc;

  /* Sizes.  The product of the non-zero dimensions times the item size
  ** must fit int64 even when another dimension is zero: such a shape
  ** describes no data, but it could not be stored or indexed either. */
  n_item = (uint64_t)npk_dtype_size(p.dtype);
  for (k = 0; k < p.ndim; k++) {
    uint64_t d = p.shape[k];
    if (d > 1) n_big++;
    if (d == 0) continue;
    if (n_nonzero > (uint64_t)INT64_MAX / d) {
      return npk_npy_err(e, "npy: shape is too large");
    }
    n_nonzero *= d;
  }
  if (n_nonzero > (uint64_t)INT64_MAX / n_item) {
    return npk_npy_err(e, "npy: shape is too large");
  }
  p.count = n_nonzero;
  for (k = 0; k < p.ndim; k++) {
    if (p.shape[k] == 0) p.count = 0;
  }
  p.data_bytes = p.count * n_item;

  /* Fortran order stores the first index fastest.  With at most one
  ** dimension longer than 1 (any 1-D array, a (1, n) row, ...) or no
  ** elements at all, the two orders give the same bytes. */
  p.fortran = fortran && n_big > 1 && p.count > 0;

  n_data = (uint64_t)(n - n_prefix) - n_header;
  if (n_data != p.data_bytes) {
    return npk_npy_err(e,
                       "npy: %" PRIu64 " bytes of data, shape needs %" PRIu64,
                       n_data, p.data_bytes);
  }
  p.data = a + n_prefix + n_header;
  if (p.dtype == NPK_BOOL) {
    long long bad = npk_bool_bad(p.data, p.data_bytes);
    if (bad >= 0) {
      return npk_npy_err(e,
                         "npy: bool element %lld is %u; bool "
                         "elements must be 0 or 1",
                         bad, p.data[bad]);
    }
  }
  *out = p;
  return 0;
}

/* --------------------------------------------------------------- header */

/*
** Format NumPy's header for an array into OUT (CAP bytes), or only measure
** it when OUT is NULL.  NumPy 1.24's np.save writes, for C order:
**
**   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
**
** (keys sorted, each "'key': repr(value), "), then 21 - len(repr(shape[0]))
** spaces when ndim > 0 (room to rewrite shape[0] in place as an array
** grows), then padlen spaces and '\n', where padlen = 64 - (prefix + text
** + 1) % 64.  Note padlen is 64, not 0, when the text already ends on a
** boundary; NumPy does that and byte-identical output must too.
*/
/* TEXT appended to BUF at N; the new length. */
static size_t put_text(char *buf, size_t n, const char *text) {
  size_t k = strlen(text);
  memcpy(buf + n, text, k);
  return n + k;
}

size_t npk_u64_text(char *buf, uint64_t v) {
  char tmp[20];
  size_t k = 0, n = 0;
  do {
    tmp[k++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (k) buf[n++] = tmp[--k];
  return n;
}

/* V in decimal appended to BUF at N; the new length. */
static size_t put_u64(char *buf, size_t n, uint64_t v) {
  return n + npk_u64_text(buf + n, v);
}

static size_t npy_header_format(int dtype, uint32_t ndim, const uint64_t *shape,
                                unsigned char *out, size_t cap) {
  char z_dict[NPK_NPY_DICT_MAX];
  size_t n_dict = 0;
  size_t n_prefix, n_pad, n_total;
  uint64_t n_header;
  const char *z_descr = npk_dtype_descr(dtype);
  uint32_t k;
  int len;

  if (z_descr == 0 || ndim > NPK_MAX_NDIM_NPY || (ndim > 0 && shape == 0))
    return 0;

  /* Every piece fits: see NPK_NPY_DICT_MAX.  Put together by hand: the
  ** header is made twice per result (its size, then its bytes), and
  ** snprintf's cost shows in a call that returns a few rows. */
  n_dict = put_text(z_dict, 0, "{'descr': '");
  n_dict = put_text(z_dict, n_dict, z_descr);
  n_dict = put_text(z_dict, n_dict, "', 'fortran_order': False, 'shape': (");
  for (k = 0; k < ndim; k++) {
    if (k > 0) n_dict = put_text(z_dict, n_dict, ", ");
    n_dict = put_u64(z_dict, n_dict, shape[k]);
  }
  /* Python's repr of a 1-tuple is "(5,)". */
  n_dict = put_text(z_dict, n_dict, ndim == 1 ? ",), }" : "), }");
  if (ndim > 0) {
    size_t n_digit = put_u64(z_dict, n_dict, shape[0]) - n_dict;
    /* NumPy pads by GROWTH - digits; a uint64 has at most 20 digits, so
    ** this is at least one space. */
    for (len = (int)n_digit; len < NPK_NPY_GROWTH; len++)
      z_dict[n_dict++] = ' ';
  }

  /* Version 1.0 when the header length fits its u16, else 2.0. */
  n_prefix = 10;
  n_pad = NPK_NPY_ALIGN - (n_prefix + n_dict + 1) % NPK_NPY_ALIGN;
  n_header = n_dict + n_pad + 1;
  if (n_header > 0xffff) {
    n_prefix = 12;
    n_pad = NPK_NPY_ALIGN - (n_prefix + n_dict + 1) % NPK_NPY_ALIGN;
    n_header = n_dict + n_pad + 1;
  }
  n_total = n_prefix + (size_t)n_header;
  if (out == 0) return n_total;
  if (cap < n_total) return 0;

  memcpy(out, NPK_NPY_MAGIC, NPK_NPY_MAGIC_LEN);
  out[6] = n_prefix == 10 ? 1 : 2;
  out[7] = 0;
  out[8] = (unsigned char)(n_header & 0xff);
  out[9] = (unsigned char)((n_header >> 8) & 0xff);
  if (n_prefix == 12) {
    out[10] = (unsigned char)((n_header >> 16) & 0xff);
    out[11] = (unsigned char)((n_header >> 24) & 0xff);
  }
  memcpy(out + n_prefix, z_dict, n_dict);
  memset(out + n_prefix + n_dict, ' ', n_pad);
  out[n_total - 1] = '\n';
  return n_total;
}

size_t npk_npy_header(int dtype, uint32_t ndim, const uint64_t *shape,
                      unsigned char *out, size_t cap) {
  /* A NULL OUT would mean "measure" to the helper; here it means no room. */
  if (out == 0) return 0;
  return npy_header_format(dtype, ndim, shape, out, cap);
}

size_t npk_npy_header_size(int dtype, uint32_t ndim, const uint64_t *shape) {
  return npy_header_format(dtype, ndim, shape, 0, 0);
}

/* ----------------------------------------------------------------- swap */

void npk_npy_swap(void *dst, const void *src, uint64_t count, int dtype) {
  int n_item = npk_dtype_size(dtype);
  /* A complex number is two floats, each in the file's byte order. */
  int w =
      (dtype == NPK_COMPLEX64 || dtype == NPK_COMPLEX128) ? n_item / 2 : n_item;
  uint64_t n_unit;
  uint64_t u;
  unsigned char *d = (unsigned char *)dst;
  const unsigned char *s = (const unsigned char *)src;

  if (n_item == 0) return;
  if (w == 1) {
    if (d != s) memmove(d, s, (size_t)count);
    return;
  }
  n_unit = count * (uint64_t)(n_item / w);
  /* Each unit is read whole before it is written, so DST may equal SRC.
  ** memcpy through fixed-width integers keeps unaligned data safe, and
  ** compilers turn the shifts into a single byte-swap instruction. */
  switch (w) {
    case 2:
      for (u = 0; u < n_unit; u++) {
        uint16_t x;
        memcpy(&x, s + u * 2, 2);
        x = (uint16_t)((x >> 8) | (x << 8));
        memcpy(d + u * 2, &x, 2);
      }
      break;
    case 4:
      for (u = 0; u < n_unit; u++) {
        uint32_t x;
        memcpy(&x, s + u * 4, 4);
        x = (x >> 24) | ((x >> 8) & 0xff00u) | ((x << 8) & 0xff0000u) |
            (x << 24);
        memcpy(d + u * 4, &x, 4);
      }
      break;
    case 8:
      for (u = 0; u < n_unit; u++) {
        uint64_t x;
        memcpy(&x, s + u * 8, 8);
        x = ((x >> 56) & 0xffull) | ((x >> 40) & 0xff00ull) |
            ((x >> 24) & 0xff0000ull) | ((x >> 8) & 0xff000000ull) |
            ((x << 8) & 0xff00000000ull) | ((x << 24) & 0xff0000000000ull) |
            ((x << 40) & 0xff000000000000ull) | (x << 56);
        memcpy(d + u * 8, &x, 8);
      }
      break;
  }
}

/* The source is read in its own order, front to back; IDX[k] counts
** dimension k (the first runs fastest) and OFF is the C-order offset, in
** items, of the element being read. */
void npk_npy_to_c(void *dst, const NpkNpy *p) {
  const unsigned char *src = p->data;
  unsigned char *out = (unsigned char *)dst;
  size_t item = (size_t)npk_dtype_size(p->dtype);
  uint64_t stride[NPK_MAX_NDIM_NPY]; /* C-order stride of each dimension */
  uint64_t idx[NPK_MAX_NDIM_NPY];
  uint64_t off = 0, n0, s0;
  uint32_t k;

  if (p->count == 0 || p->ndim == 0) return;
  stride[p->ndim - 1] = 1;
  for (k = p->ndim - 1; k > 0; k--) stride[k - 1] = stride[k] * p->shape[k];
  memset(idx, 0, sizeof idx);
  n0 = p->shape[0];
  s0 = stride[0] * item;
  for (;;) {
    unsigned char *o = out + off * item;
    uint64_t i;
    /* One run of the first dimension: a fixed stride through DST. */
    switch (item) {
      case 1:
        for (i = 0; i < n0; i++, o += s0) *o = *src++;
        break;
      case 4:
        for (i = 0; i < n0; i++, o += s0, src += 4) memcpy(o, src, 4);
        break;
      case 8:
        for (i = 0; i < n0; i++, o += s0, src += 8) memcpy(o, src, 8);
        break;
      default:
        for (i = 0; i < n0; i++, o += s0, src += item) memcpy(o, src, item);
        break;
    }
    for (k = 1; k < p->ndim; k++) {
      off += stride[k];
      if (++idx[k] < p->shape[k]) break;
      off -= stride[k] * p->shape[k];
      idx[k] = 0;
    }
    if (k == p->ndim) return;
  }
}
