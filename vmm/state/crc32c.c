/*
 * CRC-32C (Castagnoli).
 *
 * Representation: "reflected", as the SSE4.2 crc32 instruction, iSCSI and
 * ext4 use it.  The 32-bit register holds a polynomial of degree < 32 with
 * bit 0 the coefficient of x^31 and bit 31 that of x^0, and data bits enter
 * least significant bit first.  Multiplying the register by x is then
 *	STEP(c) = (c >> 1) ^ (c & 1 ? POLY : 0)
 * with POLY = 0x82F63B78, the bit-reversal of 0x1EDC6F41.
 *
 * The public crc32c() applies the customary pre- and post-inversion (see
 * state.h); the *_raw functions below work on the bare register, which is
 * what makes the three-stream combine a simple linear operation.
 */
#include <stdint.h>
#include <string.h>

#include "state.h"

#if defined(__x86_64__)
#include <nmmintrin.h> /* _mm_crc32_*: only used inside target("sse4.2") */
#include <wmmintrin.h> /* _mm_clmulepi64_si128: inside target("pclmul") */
#define CRC32C_HAVE_X86 1
#else
#define CRC32C_HAVE_X86 0
#endif

/* The word-at-a-time loops load 8 bytes with memcpy and treat byte 0 as
 * the first to enter the CRC: that is little-endian order. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "crc32c.c assumes a little-endian host");

#define CRC32C_POLY 0x82F63B78u
#define CRC32C_STEP(c) (((c) >> 1) ^ (((c) & 1u) ? CRC32C_POLY : 0u))

/*
 * Slicing-by-8 tables, built at compile time.
 *
 * T[k][i] is the register after feeding byte i and then k zero bytes into
 * a zero register, i.e. i * x^(8(k+1)) in our representation.  The map is
 * linear in i, so T[k][i] is the XOR, over the set bits b of i, of
 * STEP^(8(k+1))(1 << b) = STEP^(8(k+1)-b)(1) (shifting 1 << b right b times
 * reaches 1 without a reduction).  Those are the 64 powers
 *	CRC32C_Pm = STEP^m(1) = x^(31+m) mod P,  m = 1..64,
 * written out below and proven at compile time by the STEP chain asserts
 * (C has no loops in constant expressions, and nesting STEP 64 deep would
 * expand exponentially in the preprocessor).
 */
#define CRC32C_P1 0x82F63B78u
#define CRC32C_P2 0x417B1DBCu
#define CRC32C_P3 0x20BD8EDEu
#define CRC32C_P4 0x105EC76Fu
#define CRC32C_P5 0x8AD958CFu
#define CRC32C_P6 0xC79A971Fu
#define CRC32C_P7 0xE13B70F7u
#define CRC32C_P8 0xF26B8303u
#define CRC32C_P9 0xFBC3FAF9u
#define CRC32C_P10 0xFF17C604u
#define CRC32C_P11 0x7F8BE302u
#define CRC32C_P12 0x3FC5F181u
#define CRC32C_P13 0x9D14C3B8u
#define CRC32C_P14 0x4E8A61DCu
#define CRC32C_P15 0x274530EEu
#define CRC32C_P16 0x13A29877u
#define CRC32C_P17 0x8B277743u
#define CRC32C_P18 0xC76580D9u
#define CRC32C_P19 0xE144FB14u
#define CRC32C_P20 0x70A27D8Au
#define CRC32C_P21 0x38513EC5u
#define CRC32C_P22 0x9EDEA41Au
#define CRC32C_P23 0x4F6F520Du
#define CRC32C_P24 0xA541927Eu
#define CRC32C_P25 0x52A0C93Fu
#define CRC32C_P26 0xABA65FE7u
#define CRC32C_P27 0xD725148Bu
#define CRC32C_P28 0xE964B13Du
#define CRC32C_P29 0xF64463E6u
#define CRC32C_P30 0x7B2231F3u
#define CRC32C_P31 0xBF672381u
#define CRC32C_P32 0xDD45AAB8u
#define CRC32C_P33 0x6EA2D55Cu
#define CRC32C_P34 0x37516AAEu
#define CRC32C_P35 0x1BA8B557u
#define CRC32C_P36 0x8F2261D3u
#define CRC32C_P37 0xC5670B91u
#define CRC32C_P38 0xE045BEB0u
#define CRC32C_P39 0x7022DF58u
#define CRC32C_P40 0x38116FACu
#define CRC32C_P41 0x1C08B7D6u
#define CRC32C_P42 0x0E045BEBu
#define CRC32C_P43 0x85F4168Du
#define CRC32C_P44 0xC00C303Eu
#define CRC32C_P45 0x6006181Fu
#define CRC32C_P46 0xB2F53777u
#define CRC32C_P47 0xDB8CA0C3u
#define CRC32C_P48 0xEF306B19u
#define CRC32C_P49 0xF56E0EF4u
#define CRC32C_P50 0x7AB7077Au
#define CRC32C_P51 0x3D5B83BDu
#define CRC32C_P52 0x9C5BFAA6u
#define CRC32C_P53 0x4E2DFD53u
#define CRC32C_P54 0xA5E0C5D1u
#define CRC32C_P55 0xD0065990u
#define CRC32C_P56 0x68032CC8u
#define CRC32C_P57 0x34019664u
#define CRC32C_P58 0x1A00CB32u
#define CRC32C_P59 0x0D006599u
#define CRC32C_P60 0x847609B4u
#define CRC32C_P61 0x423B04DAu
#define CRC32C_P62 0x211D826Du
#define CRC32C_P63 0x9278FA4Eu
#define CRC32C_P64 0x493C7D27u

#define CRC32C_CHAIN(a, b)                                                   \
	_Static_assert(CRC32C_STEP(CRC32C_P##a) == CRC32C_P##b,              \
		       "CRC32C_P" #b " must equal STEP(CRC32C_P" #a ")")
_Static_assert(CRC32C_STEP(1u) == CRC32C_P1, "CRC32C_P1 must equal STEP(1)");
CRC32C_CHAIN(1, 2); CRC32C_CHAIN(2, 3); CRC32C_CHAIN(3, 4); CRC32C_CHAIN(4, 5);
CRC32C_CHAIN(5, 6); CRC32C_CHAIN(6, 7); CRC32C_CHAIN(7, 8); CRC32C_CHAIN(8, 9);
CRC32C_CHAIN(9, 10); CRC32C_CHAIN(10, 11); CRC32C_CHAIN(11, 12);
CRC32C_CHAIN(12, 13); CRC32C_CHAIN(13, 14); CRC32C_CHAIN(14, 15);
CRC32C_CHAIN(15, 16); CRC32C_CHAIN(16, 17); CRC32C_CHAIN(17, 18);
CRC32C_CHAIN(18, 19); CRC32C_CHAIN(19, 20); CRC32C_CHAIN(20, 21);
CRC32C_CHAIN(21, 22); CRC32C_CHAIN(22, 23); CRC32C_CHAIN(23, 24);
CRC32C_CHAIN(24, 25); CRC32C_CHAIN(25, 26); CRC32C_CHAIN(26, 27);
CRC32C_CHAIN(27, 28); CRC32C_CHAIN(28, 29); CRC32C_CHAIN(29, 30);
CRC32C_CHAIN(30, 31); CRC32C_CHAIN(31, 32); CRC32C_CHAIN(32, 33);
CRC32C_CHAIN(33, 34); CRC32C_CHAIN(34, 35); CRC32C_CHAIN(35, 36);
CRC32C_CHAIN(36, 37); CRC32C_CHAIN(37, 38); CRC32C_CHAIN(38, 39);
CRC32C_CHAIN(39, 40); CRC32C_CHAIN(40, 41); CRC32C_CHAIN(41, 42);
CRC32C_CHAIN(42, 43); CRC32C_CHAIN(43, 44); CRC32C_CHAIN(44, 45);
CRC32C_CHAIN(45, 46); CRC32C_CHAIN(46, 47); CRC32C_CHAIN(47, 48);
CRC32C_CHAIN(48, 49); CRC32C_CHAIN(49, 50); CRC32C_CHAIN(50, 51);
CRC32C_CHAIN(51, 52); CRC32C_CHAIN(52, 53); CRC32C_CHAIN(53, 54);
CRC32C_CHAIN(54, 55); CRC32C_CHAIN(55, 56); CRC32C_CHAIN(56, 57);
CRC32C_CHAIN(57, 58); CRC32C_CHAIN(58, 59); CRC32C_CHAIN(59, 60);
CRC32C_CHAIN(60, 61); CRC32C_CHAIN(61, 62); CRC32C_CHAIN(62, 63);
CRC32C_CHAIN(63, 64);

/* One entry: XOR of the basis values b0..b7 selected by the bits of i. */
#define CRC32C_E(i, b0, b1, b2, b3, b4, b5, b6, b7)                          \
	((((i) & 0x01) ? (b0) : 0u) ^ (((i) & 0x02) ? (b1) : 0u) ^           \
	 (((i) & 0x04) ? (b2) : 0u) ^ (((i) & 0x08) ? (b3) : 0u) ^           \
	 (((i) & 0x10) ? (b4) : 0u) ^ (((i) & 0x20) ? (b5) : 0u) ^           \
	 (((i) & 0x40) ? (b6) : 0u) ^ (((i) & 0x80) ? (b7) : 0u))
#define CRC32C_R4(i, ...)                                                    \
	CRC32C_E((i), __VA_ARGS__), CRC32C_E((i) + 1, __VA_ARGS__),          \
		CRC32C_E((i) + 2, __VA_ARGS__), CRC32C_E((i) + 3, __VA_ARGS__)
#define CRC32C_R16(i, ...)                                                   \
	CRC32C_R4((i), __VA_ARGS__), CRC32C_R4((i) + 4, __VA_ARGS__),        \
		CRC32C_R4((i) + 8, __VA_ARGS__),                             \
		CRC32C_R4((i) + 12, __VA_ARGS__)
#define CRC32C_R64(i, ...)                                                   \
	CRC32C_R16((i), __VA_ARGS__), CRC32C_R16((i) + 16, __VA_ARGS__),     \
		CRC32C_R16((i) + 32, __VA_ARGS__),                           \
		CRC32C_R16((i) + 48, __VA_ARGS__)
#define CRC32C_R256(...)                                                     \
	{ CRC32C_R64(0, __VA_ARGS__), CRC32C_R64(64, __VA_ARGS__),           \
	  CRC32C_R64(128, __VA_ARGS__), CRC32C_R64(192, __VA_ARGS__) }
/* Table k: bit b of the byte contributes CRC32C_P(8(k+1) - b). */
#define CRC32C_TABLE(k, p8, p7, p6, p5, p4, p3, p2, p1)                      \
	CRC32C_R256(CRC32C_P##p8, CRC32C_P##p7, CRC32C_P##p6, CRC32C_P##p5,  \
		    CRC32C_P##p4, CRC32C_P##p3, CRC32C_P##p2, CRC32C_P##p1)

static const uint32_t crc32c_table[8][256] = {
	CRC32C_TABLE(0, 8, 7, 6, 5, 4, 3, 2, 1),
	CRC32C_TABLE(1, 16, 15, 14, 13, 12, 11, 10, 9),
	CRC32C_TABLE(2, 24, 23, 22, 21, 20, 19, 18, 17),
	CRC32C_TABLE(3, 32, 31, 30, 29, 28, 27, 26, 25),
	CRC32C_TABLE(4, 40, 39, 38, 37, 36, 35, 34, 33),
	CRC32C_TABLE(5, 48, 47, 46, 45, 44, 43, 42, 41),
	CRC32C_TABLE(6, 56, 55, 54, 53, 52, 51, 50, 49),
	CRC32C_TABLE(7, 64, 63, 62, 61, 60, 59, 58, 57),
};

static uint32_t crc32c_sw_raw(uint32_t crc, const uint8_t *p, size_t len)
{
	const uint32_t(*t)[256] = crc32c_table;

	/* Bytewise up to an 8-byte boundary so the main loop's loads are
	 * aligned (memcpy keeps them legal either way). */
	while (len && ((uintptr_t)p & 7)) {
		crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
		len--;
	}
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		w ^= crc;
		/* Byte j of the word still has 7 - j bytes to travel. */
		crc = t[7][w & 0xff] ^ t[6][(w >> 8) & 0xff] ^
		      t[5][(w >> 16) & 0xff] ^ t[4][(w >> 24) & 0xff] ^
		      t[3][(w >> 32) & 0xff] ^ t[2][(w >> 40) & 0xff] ^
		      t[1][(w >> 48) & 0xff] ^ t[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
	return crc;
}

#if CRC32C_HAVE_X86

static inline uint64_t crc32c_load64(const uint8_t *p)
{
	uint64_t w;

	memcpy(&w, p, 8);
	return w;
}

__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw_raw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc;

	while (len && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		len--;
	}
	while (len >= 8) {
		c = _mm_crc32_u64(c, crc32c_load64(p));
		p += 8;
		len -= 8;
	}
	while (len--)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return (uint32_t)c;
}

/*
 * Three streams.  crc32 has a latency of 3 cycles but a throughput of one
 * per cycle, so a single dependency chain uses a third of the unit.  We run
 * three chains over three adjacent blocks A, B, C of n bytes each (B and C
 * starting from a zero register) and combine, by linearity:
 *	crc(A||B||C) = crcA * x^(16n) ^ crcB * x^(8n) ^ crcC   (mod P)
 *
 * Multiplying a register value a by a constant: pclmulqdq of the two
 * reflected 32-bit values yields a*k*x as a reflected 64-bit value, and
 * feeding that to crc32_u64 from a zero register multiplies by x^32 and
 * reduces.  So with k = x^(8n - 33) mod P the result is a * x^(8n).
 * The constants below are x^(8n-33) mod P in register form, i.e.
 * STEP^(8n-33)(0x80000000); the tests check this path against the table
 * path on random data of many lengths.
 */
#define CRC32C_LONG 8192
#define CRC32C_LONG_K1 0x54A86326u	/* x^(8*8192-33)   */
#define CRC32C_LONG_K2 0x1DC403CCu	/* x^(8*16384-33)  */
#define CRC32C_SHORT 256
#define CRC32C_SHORT_K1 0xB9E02B86u	/* x^(8*256-33)    */
#define CRC32C_SHORT_K2 0xDD7E3B0Cu	/* x^(8*512-33)    */

__attribute__((target("sse4.2,pclmul"))) static inline uint32_t
crc32c_mul(uint32_t a, uint32_t k)
{
	__m128i prod = _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)a),
					    _mm_cvtsi32_si128((int)k), 0x00);

	return (uint32_t)_mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(prod));
}

#define CRC32C_3WAY_BLOCK(n, k1, k2)                                         \
	while (len >= 3 * (size_t)(n)) {                                     \
		uint64_t c0 = crc, c1 = 0, c2 = 0;                           \
		const uint8_t *end = p + (n);                                \
		do {                                                         \
			c0 = _mm_crc32_u64(c0, crc32c_load64(p));            \
			c1 = _mm_crc32_u64(c1, crc32c_load64(p + (n)));      \
			c2 = _mm_crc32_u64(c2, crc32c_load64(p + 2 * (n)));  \
			p += 8;                                              \
		} while (p < end);                                           \
		crc = crc32c_mul((uint32_t)c0, (k2)) ^                       \
		      crc32c_mul((uint32_t)c1, (k1)) ^ (uint32_t)c2;         \
		p += 2 * (n);                                                \
		len -= 3 * (size_t)(n);                                      \
	}

__attribute__((target("sse4.2,pclmul"))) static uint32_t
crc32c_hw3_raw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len && ((uintptr_t)p & 7)) {
		crc = _mm_crc32_u8(crc, *p++);
		len--;
	}
	CRC32C_3WAY_BLOCK(CRC32C_LONG, CRC32C_LONG_K1, CRC32C_LONG_K2)
	CRC32C_3WAY_BLOCK(CRC32C_SHORT, CRC32C_SHORT_K1, CRC32C_SHORT_K2)
	return crc32c_hw_raw(crc, p, len);
}

/*
 * __builtin_cpu_supports reads data libgcc fills in from a constructor, so
 * it is valid from main() on; it is cheap (a load and a test), which is why
 * we ask on every call instead of caching a function pointer in a global.
 */
static bool cpu_has_sse42(void)
{
	return __builtin_cpu_supports("sse4.2");
}

static bool cpu_has_sse42_pclmul(void)
{
	return __builtin_cpu_supports("sse4.2") &&
	       __builtin_cpu_supports("pclmul");
}

#endif /* CRC32C_HAVE_X86 */

bool crc32c_impl_supported(enum crc32c_impl impl)
{
	switch (impl) {
	case CRC32C_IMPL_SW:
		return true;
#if CRC32C_HAVE_X86
	case CRC32C_IMPL_SSE42:
		return cpu_has_sse42();
	case CRC32C_IMPL_SSE42_3WAY:
		return cpu_has_sse42_pclmul();
#endif
	default:
		return false;
	}
}

uint32_t crc32c_with(enum crc32c_impl impl, uint32_t crc, const void *buf,
		     size_t len)
{
	const uint8_t *p = buf;

	crc = ~crc;
#if CRC32C_HAVE_X86
	if (impl == CRC32C_IMPL_SSE42_3WAY && cpu_has_sse42_pclmul())
		return ~crc32c_hw3_raw(crc, p, len);
	if (impl == CRC32C_IMPL_SSE42 && cpu_has_sse42())
		return ~crc32c_hw_raw(crc, p, len);
#endif
	return ~crc32c_sw_raw(crc, p, len);
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	crc = ~crc;
#if CRC32C_HAVE_X86
	/* Short inputs (section headers) are not worth three streams. */
	if (len >= 3 * CRC32C_SHORT && cpu_has_sse42_pclmul())
		return ~crc32c_hw3_raw(crc, p, len);
	if (cpu_has_sse42())
		return ~crc32c_hw_raw(crc, p, len);
#endif
	return ~crc32c_sw_raw(crc, p, len);
}
