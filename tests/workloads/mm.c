/* mm fields and the auxiliary vector: /proc/self/{cmdline,environ,auxv,exe,stat}, comm,
 * the vDSO address (and a working vDSO clock), AT_RANDOM bytes. */
#include "zoo.h"
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>

struct snap {
	char cmdline[4096], environ[16384], auxv[1024], exe[4096], comm[32];
	ssize_t cmdline_len, environ_len, auxv_len;
	unsigned long stat_fields[52];
	unsigned long vdso;
	unsigned char random[16];
};

static void read_stat(unsigned long *out)
{
	char buf[2048], *p;
	int i;

	memset(out, 0, 52 * sizeof(*out));
	if (zoo_read_file("/proc/self/stat", buf, sizeof(buf)) < 0)
		return;
	p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
	if (!p || !p[1] || !p[2])
		return;
	p += 2;
	out[2] = (unsigned char)*p; /* state */
	p++;
	for (i = 4; i <= 52 && *p; i++) {
		while (*p == ' ')
			p++;
		out[i - 1] = strtoul(p, &p, 10);
	}
}

static void take(struct snap *s)
{
	ssize_t n;

	s->cmdline_len = zoo_read_file("/proc/self/cmdline", s->cmdline, sizeof(s->cmdline));
	s->environ_len = zoo_read_file("/proc/self/environ", s->environ, sizeof(s->environ));
	s->auxv_len = zoo_read_file("/proc/self/auxv", s->auxv, sizeof(s->auxv));
	n = readlink("/proc/self/exe", s->exe, sizeof(s->exe) - 1);
	s->exe[n > 0 ? n : 0] = 0;
	zoo_read_file("/proc/self/comm", s->comm, sizeof(s->comm));
	s->comm[strcspn(s->comm, "\n")] = 0;
	read_stat(s->stat_fields);
	s->vdso = getauxval(AT_SYSINFO_EHDR);
	memcpy(s->random, (void *)getauxval(AT_RANDOM), 16);
}

static unsigned long vdso_in_maps(void)
{
	char line[512];
	unsigned long start = 0, s, e;
	FILE *f = fopen("/proc/self/maps", "r");

	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "[vdso]") && sscanf(line, "%lx-%lx", &s, &e) == 2)
			start = s;
	if (f)
		fclose(f);
	return start;
}

int main(int argc, char **argv)
{
	/* stat fields: 26 startcode 27 endcode 28 startstack 45 start_data 46 end_data
	 * 47 start_brk 48 arg_start 49 arg_end 50 env_start 51 env_end */
	static const int fields[] = {26, 27, 28, 45, 46, 47, 48, 49, 50, 51};
	static struct snap before, after;
	struct timespec a, b, c;
	double va, vb;
	size_t i;

	zoo_init(argc, argv);
	take(&before);

	zoo_ready();
	if (zoo_corrupt)
		prctl(PR_SET_NAME, "renamed", 0, 0, 0);
	zoo_wait();

	take(&after);
	ZOO_CHECK(before.cmdline_len > 0 && before.cmdline_len == after.cmdline_len &&
			  memcmp(before.cmdline, after.cmdline, before.cmdline_len) == 0,
		  "/proc/self/cmdline differs");
	ZOO_CHECK(before.environ_len > 0 && before.environ_len == after.environ_len &&
			  memcmp(before.environ, after.environ, before.environ_len) == 0,
		  "/proc/self/environ differs");
	ZOO_CHECK(before.auxv_len > 0 && before.auxv_len == after.auxv_len &&
			  memcmp(before.auxv, after.auxv, before.auxv_len) == 0,
		  "/proc/self/auxv differs");
	ZOO_CHECK(strcmp(before.exe, after.exe) == 0, "exe %s, want %s", after.exe, before.exe);
	ZOO_CHECK(strcmp(before.comm, after.comm) == 0, "comm %s, want %s", after.comm,
		  before.comm);
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		ZOO_CHECK(before.stat_fields[fields[i] - 1] == after.stat_fields[fields[i] - 1],
			  "stat field %d is %#lx, want %#lx", fields[i],
			  after.stat_fields[fields[i] - 1], before.stat_fields[fields[i] - 1]);
	ZOO_CHECK(memcmp(before.random, after.random, 16) == 0, "AT_RANDOM bytes differ");
	ZOO_CHECK(vdso_in_maps() == before.vdso, "[vdso] at %#lx, auxv says %#lx",
		  vdso_in_maps(), before.vdso);

	/* The vDSO clock agrees with the system call. */
	clock_gettime(CLOCK_MONOTONIC, &a);
	syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &b);
	clock_gettime(CLOCK_MONOTONIC, &c);
	va = a.tv_sec + a.tv_nsec / 1e9;
	vb = b.tv_sec + b.tv_nsec / 1e9;
	ZOO_CHECK(vb >= va && c.tv_sec + c.tv_nsec / 1e9 >= vb && vb - va < 1.0,
		  "vDSO clock %.6f vs syscall %.6f", va, vb);
	return zoo_done();
}
