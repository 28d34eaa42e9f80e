/* An inotify instance (non-blocking) with two watches whose numbers have gaps below them:
 * wd 2 on a directory (IN_CREATE | IN_DELETE) and wd 4 on a file (IN_MODIFY), wds 1 and
 * 3 removed before ready. After the restore no event is queued, watching the same paths
 * again gives back the same numbers, a file created in the directory and a write to the
 * file are reported with those numbers, and a new watch gets number 5. */
#include "zoo.h"
#include <sys/inotify.h>

/* Reads one event (the fd is non-blocking); returns 0 if there was none. */
static int next_event(int fd, struct inotify_event *ev, char *name, size_t cap)
{
	char buf[sizeof(struct inotify_event) + 256] __attribute__((aligned(8)));
	ssize_t n = read(fd, buf, sizeof(buf));

	if (n < (ssize_t)sizeof(*ev))
		return 0;
	memcpy(ev, buf, sizeof(*ev));
	name[0] = 0;
	if (ev->len)
		snprintf(name, cap, "%s", buf + sizeof(*ev));
	return 1;
}

/* Reads away the queued events; returns how many there were. */
static int drain(int fd)
{
	struct inotify_event ev;
	char name[256];
	int n = 0;

	while (next_event(fd, &ev, name, sizeof(name)))
		n++;
	return n;
}

int main(int argc, char **argv)
{
	struct inotify_event ev;
	char name[256];
	char *dir, *file, *other, *fresh;
	int fd, wd1, wd_dir, wd3, wd_file, wd, f, flags;

	zoo_init(argc, argv);
	dir = zoo_path("watched");
	file = zoo_path("watched-file");
	other = zoo_path("other");
	fresh = zoo_path("fresh");
	if (mkdir(dir, 0700) || mkdir(other, 0700) || mkdir(fresh, 0700))
		zoo_die("mkdir");
	f = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	if (f < 0)
		zoo_die("create the watched file");
	close(f);
	fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0)
		zoo_die("inotify_init1");
	wd1 = inotify_add_watch(fd, other, IN_CREATE);
	wd_dir = inotify_add_watch(fd, dir, IN_CREATE | IN_DELETE);
	wd3 = inotify_add_watch(fd, other, IN_CREATE);
	if (wd1 < 0 || wd_dir < 0 || wd3 < 0 || inotify_rm_watch(fd, wd1))
		zoo_die("inotify watches");
	/* wd3 watched `other` already (wd 1), added again it is still wd 1 */
	if (wd3 != wd1)
		zoo_die("re-adding a watched path gave a new wd");
	wd3 = inotify_add_watch(fd, other, IN_CREATE);
	if (wd3 < 0 || inotify_rm_watch(fd, wd3))
		zoo_die("inotify watch 3");
	wd_file = inotify_add_watch(fd, file, IN_MODIFY);
	if (wd_dir != 2 || wd3 != 3 || wd_file != 4)
		zoo_die("unexpected watch numbers");
	drain(fd); /* the IN_IGNORED of the removed watches */

	zoo_ready();
	if (zoo_corrupt && inotify_rm_watch(fd, wd_dir))
		zoo_die("corrupt");
	if (zoo_corrupt)
		drain(fd);
	zoo_wait();

	ZOO_CHECK(drain(fd) == 0, "events queued after restore");
	flags = fcntl(fd, F_GETFL);
	ZOO_CHECK(flags >= 0 && (flags & O_NONBLOCK), "inotify lost O_NONBLOCK (%#x)", flags);
	wd = inotify_add_watch(fd, dir, IN_CREATE | IN_DELETE);
	ZOO_CHECK(wd == wd_dir, "watching the directory again gave wd %d, want %d", wd, wd_dir);
	wd = inotify_add_watch(fd, file, IN_MODIFY);
	ZOO_CHECK(wd == wd_file, "watching the file again gave wd %d, want %d", wd, wd_file);

	f = open(zoo_path("watched/new"), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	if (f < 0)
		zoo_die("create in the watched directory");
	close(f);
	ZOO_CHECK(next_event(fd, &ev, name, sizeof(name)) && ev.wd == wd_dir &&
			  (ev.mask & IN_CREATE) && strcmp(name, "new") == 0,
		  "no IN_CREATE \"new\" on wd %d", wd_dir);
	f = open(file, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (f < 0 || write(f, "x", 1) != 1)
		zoo_die("write the watched file");
	close(f);
	ZOO_CHECK(next_event(fd, &ev, name, sizeof(name)) && ev.wd == wd_file &&
			  (ev.mask & IN_MODIFY),
		  "no IN_MODIFY on wd %d", wd_file);
	wd = inotify_add_watch(fd, fresh, IN_CREATE);
	ZOO_CHECK(wd == 5, "a new watch got wd %d, want 5", wd);
	return zoo_done();
}
