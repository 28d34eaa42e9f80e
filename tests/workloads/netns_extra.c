/*
 * Not a zoo workload: tests/it/namespaces.rs runs it to make a network namespace holding
 * what crs restores or not. It unshares a network namespace, brings lo up, adds one
 * thing (`addr`: 127.0.0.2 on lo:1; `route`: 10.0.0.0/8 via lo; `sysctl`:
 * net.core.somaxconn; `plain`: nothing), prints "ready", and echoes each line of
 * stdin as "got LINE" until EOF.
 * `netns_extra detached FIFO`: only lo up; it leads a session of its own with stdout and
 * stderr on /dev/null, writes "ready" into FIFO, closes it and waits for signals.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "netns_extra: %s: %s\n", what, strerror(errno));
	_exit(2);
}

static void set_addr(struct sockaddr *sa, const char *ip)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)sa;

	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, ip, &sin->sin_addr);
}

int main(int argc, char **argv)
{
	struct ifreq r;
	struct rtentry rt;
	char line[256];
	int s;
	FILE *f;

	if (argc != 2 && !(argc == 3 && strcmp(argv[1], "detached") == 0))
		return 2;
	if (unshare(CLONE_NEWNET))
		die("unshare");
	s = socket(AF_INET, SOCK_DGRAM, 0);
	if (s < 0)
		die("socket");
	memset(&r, 0, sizeof(r));
	strcpy(r.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &r))
		die("SIOCGIFFLAGS");
	r.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &r))
		die("SIOCSIFFLAGS");
	if (strcmp(argv[1], "addr") == 0) {
		memset(&r, 0, sizeof(r));
		strcpy(r.ifr_name, "lo:1");
		set_addr(&r.ifr_addr, "127.0.0.2");
		if (ioctl(s, SIOCSIFADDR, &r))
			die("SIOCSIFADDR");
	} else if (strcmp(argv[1], "route") == 0) {
		memset(&rt, 0, sizeof(rt));
		set_addr(&rt.rt_dst, "10.0.0.0");
		set_addr(&rt.rt_genmask, "255.0.0.0");
		rt.rt_flags = RTF_UP;
		rt.rt_dev = "lo";
		if (ioctl(s, SIOCADDRT, &rt))
			die("SIOCADDRT");
	} else if (strcmp(argv[1], "sysctl") == 0) {
		f = fopen("/proc/sys/net/core/somaxconn", "w");
		if (!f || fprintf(f, "1234\n") < 0 || fclose(f))
			die("somaxconn");
	} else if (strcmp(argv[1], "plain") == 0) {
	} else if (strcmp(argv[1], "detached") == 0) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0 || setsid() < 0)
			die("detaching");
		close(fd);
		close(s);
		fd = open(argv[2], O_WRONLY);
		if (fd < 0 || write(fd, "ready", 5) != 5)
			die("ready fifo");
		close(fd);
		for (;;)
			pause();
	} else {
		return 2;
	}
	close(s);
	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		printf("got %s", line);
		fflush(stdout);
	}
	return 0;
}
