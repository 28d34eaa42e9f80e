/* Vector and FPU registers across the wait: zmm0-31 and k0-7 (AVX-512) or ymm0-15 (AVX2)
 * hold known values, x87 holds three values and a non-default control word, MXCSR has
 * non-default rounding and flush-to-zero, and PKRU a non-default value. One function in
 * assembly loads the registers, only then reports ready (raw write and close of the ready
 * fd), breaks the item asked for, and waits in a raw rt_sigsuspend loop, so nothing but
 * the kernel touches the registers between ready and SIGTERM. */
#include "zoo.h"
#include <cpuid.h>

#define K_OFF 2048
#define ST_OFF 2112
#define CW_OFF 2136    /* out and in: x87 control word; in+2138: the default one */
#define MXCSR_OFF 2140 /* out and in: MXCSR; in+2144: the default one */
#define FD_OFF 2152    /* in: the fd to write "ready\n" to, closed after */
#define BREAK_OFF 2156 /* in: which register class to break after ready (enum breaks) */
#define PKRU_OFF 2160  /* in: the PKRU value the break of PKRU loads */
#define BUF 2176

/* The register classes the assembly can break (BREAK_OFF). */
enum breaks { B_NONE, B_VEC, B_K, B_X87, B_CW, B_MXCSR, B_PKRU };

void regs_avx512(const void *in, void *out, const sigset_t *mask, volatile sig_atomic_t *flag);
void regs_avx2(const void *in, void *out, const sigset_t *mask, volatile sig_atomic_t *flag);

asm(".section .rodata\nzoo_avx_ready: .ascii \"ready\\n\"\n.text\n");

/* rdi = in, rsi = out, rdx = mask, rcx = flag. Uses only caller-saved registers. */
#define PROLOGUE(name)                                                                   \
	".text\n.globl " name "\n.type " name ",@function\n" name ":\n"                      \
	"mov %rdi, %r8\nmov %rsi, %r9\nmov %rdx, %r10\nmov %rcx, %rdx\n"                 \
	"ldmxcsr 2140(%r8)\nfldcw 2136(%r8)\nfldl 2112(%r8)\nfldl 2120(%r8)\nfldl 2128(%r8)\n"
/* write(fd, "ready\n", 6); close(fd): syscalls keep every register but rax, rcx, r11. */
#define READY                                                                            \
	"push %rdx\nmovslq 2152(%r8), %rdi\nlea zoo_avx_ready(%rip), %rsi\nmov $6, %edx\n"  \
	"mov $1, %eax\nsyscall\nmovslq 2152(%r8), %rdi\nmov $3, %eax\nsyscall\npop %rdx\n"
/* One register class changed, as BREAK_OFF says. */
#define BREAK(vec_break, k_break)                                                        \
	"mov 2156(%r8), %eax\n"                                                          \
	"cmp $1, %eax\njne 3f\n" vec_break "\n3:\n"                                      \
	"cmp $2, %eax\njne 4f\n" k_break "\n4:\n"                                        \
	"cmp $3, %eax\njne 5f\nfxch\n5:\n"                                               \
	"cmp $4, %eax\njne 6f\nfldcw 2138(%r8)\n6:\n"                                    \
	"cmp $5, %eax\njne 7f\nldmxcsr 2144(%r8)\n7:\n"                                  \
	"cmp $6, %eax\njne 8f\npush %rdx\nmov 2160(%r8), %eax\nxor %ecx, %ecx\n"          \
	"xor %edx, %edx\n.byte 0x0f,0x01,0xef\npop %rdx\n8:\n"
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
    READY
    BREAK("vmovdqu64 64(%r8), %zmm0", "kmovq 2056(%r8), %k0")
    WAIT
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\nvmovdqu64 %zmm\\i, \\i*64(%r9)\n.endr\n"
    ".irp i,0,1,2,3,4,5,6,7\nkmovq %k\\i, 2048+\\i*8(%r9)\n.endr\n"
    EPILOGUE("regs_avx512"));

asm(PROLOGUE("regs_avx2")
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\nvmovdqu \\i*32(%r8), %ymm\\i\n.endr\n"
    READY
    BREAK("vmovdqu 32(%r8), %ymm0", "")
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
	int avx512, avx2, pku, fd, k_item, pkru_item, items, i;
	unsigned pkru0 = 0, pkru1 = 0, pkru_after = 0;
	sigset_t mask;
	size_t vec_len, j;
	/* Items: 1 vector registers, 2 x87 registers, 3 x87 control word, 4 MXCSR, then
	 * the k registers (with AVX-512) and PKRU (with protection keys). */
	enum { VEC = 1, X87, X87_CW, MXCSR };
	int breaks[8] = {B_NONE, B_VEC, B_X87, B_CW, B_MXCSR};

	__builtin_cpu_init();
	avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
	avx2 = __builtin_cpu_supports("avx2");
	pku = has_ospke();
	items = MXCSR;
	k_item = avx512 ? ++items : -1;
	pkru_item = pku ? ++items : -1;
	if (avx512)
		breaks[k_item] = B_K;
	if (pku)
		breaks[pkru_item] = B_PKRU;
	zoo_init(argc, argv, items);
	if (!avx512 && !avx2) {
		fprintf(stderr, "ERROR: %s: the CPU has neither AVX-512 nor AVX2\n", zoo_name);
		return 2;
	}
	fprintf(stderr, "avx512 %d pku %d\n", avx512, pku);
	vec_len = avx512 ? 2048 : 512;

	zoo_fill(in, K_OFF + 64, 0xa5a5);
	memcpy(in + ST_OFF, st, sizeof(st));
	memcpy(in + CW_OFF, &cw, 2);
	memcpy(in + CW_OFF + 2, &cw_default, 2);
	memcpy(in + MXCSR_OFF, &mxcsr, 4);
	memcpy(in + MXCSR_OFF + 4, &mxcsr_default, 4);
	memcpy(want, in, K_OFF + 64);
	/* x87 is a stack: the values come back in reverse order. */
	memcpy(want + ST_OFF, &st[2], 8);
	memcpy(want + ST_OFF + 8, &st[1], 8);
	memcpy(want + ST_OFF + 16, &st[0], 8);
	memcpy(want + CW_OFF, &cw, 2);
	memcpy(want + MXCSR_OFF, &mxcsr, 4);
	if (pku) {
		pkru0 = rdpkru();
		pkru1 = pkru0 | (3u << 30); /* deny key 15, which no page uses */
		i = (int)(pkru0 | (3u << 28)); /* the break also denies key 14 */
		memcpy(in + PKRU_OFF, &i, 4);
		wrpkru(pkru1);
	}
	i = breaks[zoo_corrupt];
	memcpy(in + BREAK_OFF, &i, 4);
	fd = zoo_ready_fd();
	memcpy(in + FD_OFF, &fd, 4);

	/* Loads the registers, reports ready, waits for SIGTERM, stores the registers. */
	zoo_wait_mask(&mask);
	if (avx512)
		regs_avx512(in, out, &mask, &zoo_term);
	else
		regs_avx2(in, out, &mask, &zoo_term);
	if (pku) {
		pkru_after = rdpkru();
		wrpkru(pkru0);
	}

	for (j = 0; j < vec_len; j++)
		if (out[j] != want[j]) {
			zoo_fail(VEC, "%s byte %zu (register %zu) is %#x, want %#x",
				 avx512 ? "zmm" : "ymm", j, j / (avx512 ? 64 : 32), out[j], want[j]);
			break;
		}
	for (j = K_OFF; avx512 && j < K_OFF + 64; j++)
		if (out[j] != want[j]) {
			zoo_fail(k_item, "k byte %zu (register %zu) is %#x, want %#x", j - K_OFF,
				 (j - K_OFF) / 8, out[j], want[j]);
			break;
		}
	ZOO_CHECK(X87, memcmp(out + ST_OFF, want + ST_OFF, 24) == 0, "x87 registers differ");
	ZOO_CHECK(X87_CW, memcmp(out + CW_OFF, &cw, 2) == 0, "x87 control word differs");
	ZOO_CHECK(MXCSR, memcmp(out + MXCSR_OFF, &mxcsr, 4) == 0, "MXCSR %#x, want %#x",
		  *(uint32_t *)(out + MXCSR_OFF), mxcsr);
	if (pku)
		ZOO_CHECK(pkru_item, pkru_after == pkru1, "PKRU %#x, want %#x", pkru_after, pkru1);
	return zoo_done();
}
