/* Vector and FPU registers across the wait: zmm0-31 and k0-7 (AVX-512) or ymm0-15 (AVX2)
 * hold known values, x87 holds three values and a non-default control word, MXCSR has
 * non-default rounding and flush-to-zero, and PKRU a non-default value; the wait is a raw
 * rt_sigsuspend loop in assembly, so nothing but the kernel touches the registers. */
#include "zoo.h"
#include <cpuid.h>

#define K_OFF 2048
#define ST_OFF 2112
#define CW_OFF 2136    /* out and in: x87 control word; in+2138: the default one */
#define MXCSR_OFF 2140 /* out and in: MXCSR; in+2144: the default one */
#define CMP_LEN 2144
#define BUF 2176

void regs_avx512(const void *in, void *out, const sigset_t *mask, volatile sig_atomic_t *flag);
void regs_avx2(const void *in, void *out, const sigset_t *mask, volatile sig_atomic_t *flag);

/* rdi = in, rsi = out, rdx = mask, rcx = flag. Uses only caller-saved registers. */
#define PROLOGUE(name)                                                                   \
	".text\n.globl " name "\n.type " name ",@function\n" name ":\n"                      \
	"mov %rdi, %r8\nmov %rsi, %r9\nmov %rdx, %r10\nmov %rcx, %rdx\n"                 \
	"ldmxcsr 2140(%r8)\nfldcw 2136(%r8)\nfldl 2112(%r8)\nfldl 2120(%r8)\nfldl 2128(%r8)\n"
#define WAIT                                                                             \
	"1: cmpl $0, (%rdx)\njne 2f\nmov %r10, %rdi\nmov $8, %esi\nmov $130, %eax\n"       \
	"syscall\njmp 1b\n2:\n"
#define EPILOGUE(name)                                                                   \
	"fstpl 2112(%r9)\nfstpl 2120(%r9)\nfstpl 2128(%r9)\nfnstcw 2136(%r9)\n"              \
	"stmxcsr 2140(%r9)\nfldcw 2138(%r8)\nldmxcsr 2144(%r8)\nvzeroupper\nret\n"           \
	".size " name ", .-" name "\n"

asm(PROLOGUE("regs_avx512")
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\nvmovdqu64 \\i*64(%r8), %zmm\\i\n.endr\n"
    ".irp i,0,1,2,3,4,5,6,7\nkmovq 2048+\\i*8(%r8), %k\\i\n.endr\n"
    WAIT
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\nvmovdqu64 %zmm\\i, \\i*64(%r9)\n.endr\n"
    ".irp i,0,1,2,3,4,5,6,7\nkmovq %k\\i, 2048+\\i*8(%r9)\n.endr\n"
    EPILOGUE("regs_avx512"));

asm(PROLOGUE("regs_avx2")
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\nvmovdqu \\i*32(%r8), %ymm\\i\n.endr\n"
    WAIT
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\nvmovdqu %ymm\\i, \\i*32(%r9)\n.endr\n"
    EPILOGUE("regs_avx2"));

static int has_ospke(void)
{
	unsigned a, b, c, d;

	return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 4));
}

static unsigned rdpkru(void)
{
	unsigned eax, edx;

	asm volatile(".byte 0x0f,0x01,0xee" : "=a"(eax), "=d"(edx) : "c"(0));
	return eax;
}

static void wrpkru(unsigned v)
{
	asm volatile(".byte 0x0f,0x01,0xef" : : "a"(v), "c"(0), "d"(0) : "memory");
}

int main(int argc, char **argv)
{
	static unsigned char in[BUF], out[BUF], want[BUF];
	const double st[3] = {1.5, -2.25, 1e100};
	uint16_t cw = 0x077f, cw_default = 0x037f;
	uint32_t mxcsr = 0xff80, mxcsr_default = 0x1f80;
	int avx512, pku;
	unsigned pkru0 = 0, pkru1 = 0, pkru_after = 0;
	sigset_t mask;
	size_t vec_len;

	zoo_init(argc, argv);
	__builtin_cpu_init();
	avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
	if (!avx512 && !__builtin_cpu_supports("avx2")) {
		fprintf(stderr, "ERROR: %s: the CPU has neither AVX-512 nor AVX2\n", zoo_name);
		return 2;
	}
	pku = has_ospke();
	fprintf(stderr, "avx512 %d pku %d\n", avx512, pku);
	vec_len = avx512 ? 2048 + 64 : 512;

	zoo_fill(in, K_OFF + 64, 0xa5a5);
	memcpy(in + ST_OFF, st, sizeof(st));
	memcpy(in + CW_OFF, &cw, 2);
	memcpy(in + CW_OFF + 2, &cw_default, 2);
	memcpy(in + MXCSR_OFF, &mxcsr, 4);
	memcpy(in + MXCSR_OFF + 4, &mxcsr_default, 4);
	memcpy(want, in, vec_len);
	/* x87 is a stack: the values come back in reverse order. */
	memcpy(want + ST_OFF, &st[2], 8);
	memcpy(want + ST_OFF + 8, &st[1], 8);
	memcpy(want + ST_OFF + 16, &st[0], 8);
	memcpy(want + CW_OFF, &cw, 2);
	memcpy(want + MXCSR_OFF, &mxcsr, 4);
	if (pku) {
		pkru0 = rdpkru();
		pkru1 = pkru0 | (3u << 30); /* deny key 15, which no page uses */
		wrpkru(pkru1);
	}

	zoo_ready();
	if (zoo_corrupt)
		in[100] ^= 1;
	zoo_wait_mask(&mask);
	if (avx512)
		regs_avx512(in, out, &mask, &zoo_term);
	else
		regs_avx2(in, out, &mask, &zoo_term);
	if (pku) {
		pkru_after = rdpkru();
		wrpkru(pkru0);
	}

	for (size_t i = 0; i < vec_len; i++)
		if (out[i] != want[i]) {
			zoo_fail("%s byte %zu (register %zu) is %#x, want %#x", avx512 ? "zmm/k" : "ymm",
				 i, i < 2048 ? i / (avx512 ? 64 : 32) : (i - 2048) / 8, out[i], want[i]);
			break;
		}
	ZOO_CHECK(memcmp(out + ST_OFF, want + ST_OFF, 24) == 0, "x87 registers differ");
	ZOO_CHECK(memcmp(out + CW_OFF, &cw, 2) == 0, "x87 control word differs");
	ZOO_CHECK(memcmp(out + MXCSR_OFF, &mxcsr, 4) == 0, "MXCSR %#x, want %#x",
		  *(uint32_t *)(out + MXCSR_OFF), mxcsr);
	ZOO_CHECK(!pku || pkru_after == pkru1, "PKRU %#x, want %#x", pkru_after, pkru1);
	return zoo_done();
}
