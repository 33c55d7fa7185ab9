/*
** dtype_test.c — unit tests of src/dtype.c: the code table, the name
** parser, and the float16 conversions (exhaustively over all 65536 half
** values, plus the rounding cases that matter).
*/
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ctest.h"
#include "dtype.h"

static uint64_t bits_of(double d){
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

static double double_of(uint64_t u){
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

static int half_is_nan(unsigned short h){
  return (h & 0x7c00)==0x7c00 && (h & 0x3ff)!=0;
}

/* The table as NumPy has it: code, name, descr, size. */
static const struct {
  int code;
  const char *name;
  const char *shortName;
  const char *descr;
  int size;
  int isInt;
  int isFloat;
} expect[] = {
  {  0, "bool",       "b1",  "|b1",   1, 1, 0 },
  {  1, "uint8",      "u1",  "|u1",   1, 1, 0 },
  {  2, "uint16",     "u2",  "<u2",   2, 1, 0 },
  {  3, "uint32",     "u4",  "<u4",   4, 1, 0 },
  {  4, "uint64",     "u8",  "<u8",   8, 1, 0 },
  {  5, "int8",       "i1",  "|i1",   1, 1, 0 },
  {  6, "int16",      "i2",  "<i2",   2, 1, 0 },
  {  7, "int32",      "i4",  "<i4",   4, 1, 0 },
  {  8, "int64",      "i8",  "<i8",   8, 1, 0 },
  {  9, "float16",    "f2",  "<f2",   2, 0, 1 },
  { 10, "float32",    "f4",  "<f4",   4, 0, 1 },
  { 11, "float64",    "f8",  "<f8",   8, 0, 1 },
  { 12, "complex64",  "c8",  "<c8",   8, 0, 0 },
  { 13, "complex128", "c16", "<c16", 16, 0, 0 },
};
#define NEXPECT ((int)(sizeof expect / sizeof expect[0]))

static void test_codes(void){
  int i;
  CHECK_EQ(NEXPECT, NPK_NDTYPE);
  CHECK_EQ(NPK_BOOL, 0);
  CHECK_EQ(NPK_FLOAT16, 9);
  CHECK_EQ(NPK_COMPLEX128, 13);
  for(i=0; i<NEXPECT; i++){
    int c = expect[i].code;
    CHECK_EQ(npk_dtype_size(c), expect[i].size);
    CHECK(npk_dtype_name(c) && strcmp(npk_dtype_name(c), expect[i].name)==0);
    CHECK(npk_dtype_descr(c)
          && strcmp(npk_dtype_descr(c), expect[i].descr)==0);
    CHECK_EQ(npk_dtype_is_integer(c), expect[i].isInt);
    CHECK_EQ(npk_dtype_is_float(c), expect[i].isFloat);
  }
}

static void test_unknown_codes(void){
  static const int bad[] = { -1, 14, 15, 255, 256, -1000, 1<<30 };
  int i;
  for(i=0; i<(int)(sizeof bad / sizeof bad[0]); i++){
    CHECK_EQ(npk_dtype_size(bad[i]), 0);
    CHECK(npk_dtype_name(bad[i])==0);
    CHECK(npk_dtype_descr(bad[i])==0);
    CHECK_EQ(npk_dtype_is_integer(bad[i]), 0);
    CHECK_EQ(npk_dtype_is_float(bad[i]), 0);
  }
}

static void test_names(void){
  int i;
  for(i=0; i<NEXPECT; i++){
    char buf[16];
    CHECK_EQ(npk_dtype_from_name(expect[i].name), expect[i].code);
    CHECK_EQ(npk_dtype_from_name(expect[i].shortName), expect[i].code);
    /* Every descr we write must parse back. */
    CHECK_EQ(npk_dtype_from_name(expect[i].descr), expect[i].code);
    snprintf(buf, sizeof buf, "<%s", expect[i].shortName);
    CHECK_EQ(npk_dtype_from_name(buf), expect[i].code);
    /* Byte orders other than little-endian are refused. */
    snprintf(buf, sizeof buf, ">%s", expect[i].shortName);
    CHECK_EQ(npk_dtype_from_name(buf), -1);
    snprintf(buf, sizeof buf, "=%s", expect[i].shortName);
    CHECK_EQ(npk_dtype_from_name(buf), -1);
    /* '|' means "no byte order", which only one-byte types have. */
    snprintf(buf, sizeof buf, "|%s", expect[i].shortName);
    CHECK_EQ(npk_dtype_from_name(buf),
             expect[i].size==1 ? expect[i].code : -1);
  }
}

static void test_aliases(void){
  CHECK_EQ(npk_dtype_from_name("float"), NPK_FLOAT64);
  CHECK_EQ(npk_dtype_from_name("double"), NPK_FLOAT64);
  CHECK_EQ(npk_dtype_from_name("single"), NPK_FLOAT32);
  CHECK_EQ(npk_dtype_from_name("half"), NPK_FLOAT16);
  CHECK_EQ(npk_dtype_from_name("int"), NPK_INT64);
  CHECK_EQ(npk_dtype_from_name("complex"), NPK_COMPLEX128);
}

static void test_bad_names(void){
  static const char *bad[] = {
    "", "Float32", "FLOAT32", "float32 ", " float32", "float128", "int128",
    "uint", "f", "i", "u3", "f16", "c4", "b", "B", "?", "bool_", "object",
    "str", "<", "|", "<<f4", "|f4", "|<f4", "float32\n", "S10", "U4", "V8",
    "datetime64", "int 32",
  };
  int i;
  CHECK_EQ(npk_dtype_from_name(0), -1);
  for(i=0; i<(int)(sizeof bad / sizeof bad[0]); i++){
    if( npk_dtype_from_name(bad[i])!=-1 ){
      printf("  accepted \"%s\"\n", bad[i]);
      CHECK(0);
    }
  }
}

/* Every half value survives half -> double -> half.  NaNs must stay NaNs
** of the same sign; a quiet NaN keeps its payload (a signalling one may be
** quieted by a platform that moves doubles through x87 registers). */
static void test_half_roundtrip_all(void){
  unsigned int h;
  int bad = 0;
  for(h=0; h<0x10000; h++){
    double d = npk_half_to_double((unsigned short)h);
    unsigned short back = npk_double_to_half(d);
    int ok;
    if( half_is_nan((unsigned short)h) ){
      ok = isnan(d) && half_is_nan(back) && (back & 0x8000)==(h & 0x8000)
        && (!(h & 0x200) || back==h);
    }else{
      ok = back==h;
    }
    if( !ok && bad++<10 ){
      printf("  half 0x%04x -> %.17g -> 0x%04x\n", h, d, back);
    }
  }
  CHECK_EQ(bad, 0);
}

/* The double value of every half, computed independently by arithmetic. */
static void test_half_values_all(void){
  unsigned int h;
  int bad = 0;
  for(h=0; h<0x10000; h++){
    int exp = (h>>10) & 0x1f;
    int frac = h & 0x3ff;
    double want, got = npk_half_to_double((unsigned short)h);
    if( exp==0x1f ){
      if( frac ? !isnan(got) : !isinf(got) ) bad++;
      if( (signbit(got)!=0) != ((h & 0x8000)!=0) ) bad++;
      continue;
    }
    if( exp==0 ){
      want = ldexp((double)frac, -24);
    }else{
      want = ldexp((double)(frac + 1024), exp - 25);
    }
    if( h & 0x8000 ) want = -want;
    if( bits_of(got)!=bits_of(want) && bad++<10 ){
      printf("  half 0x%04x -> %.17g, want %.17g\n", h, got, want);
    }
  }
  CHECK_EQ(bad, 0);
}

/* Between two adjacent finite halves, the midpoint rounds to the one with
** an even fraction, and anything nearer one of them rounds to that one. */
static void test_half_midpoints_all(void){
  unsigned int h;
  int bad = 0;
  for(h=0; h<0x7bff; h++){
    unsigned int sgn;
    for(sgn=0; sgn<=0x8000; sgn+=0x8000){
      unsigned short lo = (unsigned short)(h | sgn);
      unsigned short hi = (unsigned short)((h+1) | sgn);
      double a = npk_half_to_double(lo);
      double b = npk_half_to_double(hi);
      double mid = (a + b) / 2;         /* exact: halves have 11 bits */
      unsigned short even = (h & 1) ? hi : lo;
      /* The doubles next to MID on the side of LO and of HI (the bit
      ** pattern orders magnitudes, whatever the sign). */
      double below = double_of(bits_of(mid) - 1);
      double above = double_of(bits_of(mid) + 1);
      if( npk_double_to_half(mid)!=even
       || npk_double_to_half(below)!=lo
       || npk_double_to_half(above)!=hi ){
        if( bad++<10 ){
          printf("  between 0x%04x and 0x%04x: mid->0x%04x\n",
                 lo, hi, npk_double_to_half(mid));
        }
      }
    }
  }
  CHECK_EQ(bad, 0);
}

static void test_half_known(void){
  /* Exact values. */
  CHECK_EQ(npk_double_to_half(0.0), 0x0000);
  CHECK_EQ(npk_double_to_half(-0.0), 0x8000);
  CHECK_EQ(npk_double_to_half(1.0), 0x3c00);
  CHECK_EQ(npk_double_to_half(-2.0), 0xc000);
  CHECK_EQ(npk_double_to_half(0.5), 0x3800);
  CHECK_EQ(npk_double_to_half(65504.0), 0x7bff);      /* largest finite */
  CHECK_EQ(npk_double_to_half(ldexp(1, -14)), 0x0400); /* smallest normal */
  CHECK_EQ(npk_double_to_half(ldexp(1023, -24)), 0x03ff);
  CHECK_EQ(npk_double_to_half(ldexp(1, -24)), 0x0001);  /* smallest subn. */
  CHECK_EQ(npk_double_to_half(-ldexp(1, -24)), 0x8001);

  /* Rounding to nearest. */
  CHECK_EQ(npk_double_to_half(0.1), 0x2e66);
  CHECK_EQ(npk_double_to_half(1.0/3.0), 0x3555);
  CHECK_EQ(npk_double_to_half(3.14159265358979), 0x4248);
  CHECK_EQ(npk_double_to_half(-1e-3), 0x9419);

  /* Ties go to even. */
  CHECK_EQ(npk_double_to_half(1.0 + ldexp(1, -11)), 0x3c00);
  CHECK_EQ(npk_double_to_half(1.0 + 3*ldexp(1, -11)), 0x3c02);
  CHECK_EQ(npk_double_to_half(2049.0), 0x6800);   /* 2048 | 2050: 2048 */
  CHECK_EQ(npk_double_to_half(2051.0), 0x6802);   /* 2050 | 2052: 2052 */
  CHECK_EQ(npk_double_to_half(1.0 + ldexp(1, -11) + ldexp(1, -40)), 0x3c01);

  /* Subnormals, including ties and the carry into the normal range. */
  CHECK_EQ(npk_double_to_half(ldexp(1, -25)), 0x0000);   /* tie: 0 */
  CHECK_EQ(npk_double_to_half(-ldexp(1, -25)), 0x8000);
  CHECK_EQ(npk_double_to_half(ldexp(1, -25) * 1.0000001), 0x0001);
  CHECK_EQ(npk_double_to_half(ldexp(3, -25)), 0x0002);   /* tie: 2 */
  CHECK_EQ(npk_double_to_half(ldexp(5, -25)), 0x0002);   /* tie: 2 */
  CHECK_EQ(npk_double_to_half(ldexp(2047, -25)), 0x0400);/* tie: normal */
  CHECK_EQ(npk_double_to_half(ldexp(1, -26)), 0x0000);
  CHECK_EQ(npk_double_to_half(1e-300), 0x0000);
  CHECK_EQ(npk_double_to_half(4.9e-324), 0x0000);        /* dbl subnormal */
  CHECK_EQ(npk_double_to_half(-4.9e-324), 0x8000);
  CHECK_EQ(npk_double_to_half(6e-8), 0x0001);

  /* Overflow: 65520 is the midpoint between 65504 and 2^16. */
  CHECK_EQ(npk_double_to_half(65519.99), 0x7bff);
  CHECK_EQ(npk_double_to_half(65520.0), 0x7c00);
  CHECK_EQ(npk_double_to_half(-65520.0), 0xfc00);
  CHECK_EQ(npk_double_to_half(65536.0), 0x7c00);
  CHECK_EQ(npk_double_to_half(1e6), 0x7c00);
  CHECK_EQ(npk_double_to_half(-1e300), 0xfc00);
  CHECK_EQ(npk_double_to_half(HUGE_VAL), 0x7c00);
  CHECK_EQ(npk_double_to_half(-HUGE_VAL), 0xfc00);

  /* NaN stays NaN, with its sign; payload bits beyond half's are lost. */
  CHECK(half_is_nan(npk_double_to_half(NAN)));
  CHECK(half_is_nan(npk_double_to_half(double_of(0x7ff0000000000001ull))));
  CHECK_EQ(npk_double_to_half(double_of(0xfff8000000000000ull)), 0xfe00);
  CHECK_EQ(npk_double_to_half(double_of(0x7ff8000000000000ull)), 0x7e00);

  /* Half to double, a few by value. */
  CHECK(npk_half_to_double(0x3c00)==1.0);
  CHECK(npk_half_to_double(0x7bff)==65504.0);
  CHECK(npk_half_to_double(0x0001)==ldexp(1, -24));
  CHECK(npk_half_to_double(0x8000)==0.0 && signbit(npk_half_to_double(0x8000)));
  CHECK(isinf(npk_half_to_double(0x7c00)) && npk_half_to_double(0x7c00)>0);
  CHECK(isinf(npk_half_to_double(0xfc00)) && npk_half_to_double(0xfc00)<0);
  CHECK(isnan(npk_half_to_double(0x7e00)));
}

/* Where the compiler has a native _Float16, it is an independent oracle
** for double -> half over many pseudo-random doubles of every magnitude. */
static void test_half_vs_compiler(void){
#if defined(__FLT16_MAX__) && !defined(NPK_NO_FLOAT16_ORACLE)
  uint64_t x = 0x9e3779b97f4a7c15ull;
  int i, bad = 0;
  for(i=0; i<2000000; i++){
    double d;
    _Float16 f;
    unsigned short want;
    x ^= x<<13; x ^= x>>7; x ^= x<<17;
    /* Keep the exponent near half's range so most cases are interesting. */
    d = double_of((x & 0x800fffffffffffffull)
                  | ((uint64_t)(1023 - 30 + (int)((x>>52) % 48))<<52));
    f = (_Float16)d;
    memcpy(&want, &f, sizeof want);
    if( npk_double_to_half(d)!=want && bad++<10 ){
      printf("  %.17g -> 0x%04x, compiler says 0x%04x\n",
             d, npk_double_to_half(d), want);
    }
  }
  CHECK_EQ(bad, 0);
#endif
}

/* npk_bool_bad finds the first byte that is not 0 or 1 wherever it lies:
** before, inside and after the 64-byte blocks it checks at once. */
static void test_bool_bad(void){
  unsigned char b[200];
  for(int i=0; i<200; i++) b[i] = (unsigned char)(i%3==0);
  CHECK_EQ(npk_bool_bad(b, sizeof b), -1);
  CHECK_EQ(npk_bool_bad(b, 0), -1);
  int at[] = {0, 5, 63, 64, 70, 127, 128, 199};
  for(unsigned k=0; k<sizeof at/sizeof at[0]; k++){
    unsigned char keep = b[at[k]];
    b[at[k]] = 2;
    CHECK_EQ(npk_bool_bad(b, sizeof b), at[k]);
    b[at[k]] = 255;
    CHECK_EQ(npk_bool_bad(b, sizeof b), at[k]);
    b[at[k]] = keep;
  }
  b[10] = 9; b[150] = 9;
  CHECK_EQ(npk_bool_bad(b, sizeof b), 10);
  CHECK_EQ(npk_bool_bad(b+11, 189), 139);
}

int main(void){
  RUN(test_codes);
  RUN(test_unknown_codes);
  RUN(test_names);
  RUN(test_aliases);
  RUN(test_bad_names);
  RUN(test_half_roundtrip_all);
  RUN(test_half_values_all);
  RUN(test_half_midpoints_all);
  RUN(test_half_known);
  RUN(test_half_vs_compiler);
  RUN(test_bool_bad);
  return CTEST_END();
}
