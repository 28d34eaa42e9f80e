/* An inotify instance (non-blocking) with two watches whose numbers have gaps below them:
 * wd 2 on a directory (IN_CREATE | IN_DELETE) and wd 4 on a file (IN_MODIFY), wds 1 and
 * 3 removed before ready. After the restore no event is queued, /proc/self/fdinfo shows
 * each watch with its number, inode and mask, watching the same paths again gives back
 * the same numbers, a file created in the directory and a write to the file are reported
 * with those numbers, and a new watch gets number 5. */
#include "zoo.h"
#include <poll.h>
#include <sys/inotify.h>

enum {
	NO_EVENTS = 1, /* nothing queued after the restore */
	NONBLOCK,
	DIR_WATCH,  /* wd 2: in fdinfo with the directory's inode and its mask, re-added as
		     * 2, and reports a file created there */
	FILE_WATCH, /* wd 4: the same for the file and a write to it */
	NEXT_WD,    /* a new watch gets number 5 */
	ITEMS = NEXT_WD
};

/* Whether fdinfo of inotify fd `fd` shows watch `wd` on inode `ino` with mask `mask`. */
static int in_fdinfo(int fd, int wd, ino_t ino, unsigned mask)
{
	char path[64], line[512];
	unsigned w, m;
	unsigned long i;
	int found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "inotify wd:%x ino:%lx sdev:%*x mask:%x", &w, &i, &m) == 3 &&
		    (int)w == wd)
			found = i == (unsigned long)ino && m == mask;
	if (f)
		fclose(f);
	return found;
}

static ino_t ino_of(const char *path)
{
	struct stat st;

	if (stat(path, &st))
		zoo_die(path);
	return st.st_ino;
}

/* Reads one event (the fd is non-blocking); returns 0 if there was none. */
static int next_event(int fd, struct inotify_event *ev, char *name, size_t cap)
{
	char buf[sizeof(struct inotify_event) + 256] __attribute__((aligned(8)));
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	ssize_t n;

	/* Polled first: a broken run's fd may be blocking. */
	if (poll(&pfd, 1, 0) != 1)
		return 0;
	n = read(fd, buf, sizeof(buf));
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
	int fd, wd1, wd_dir, wd3, wd_file, wd, f, flags, in_info, got;
	unsigned dir_mask = IN_CREATE | IN_DELETE, file_mask = IN_MODIFY;

	zoo_init(argc, argv, ITEMS);
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
	if (ZOO_BREAK(NO_EVENTS)) {
		f = open(zoo_path("watched/early"), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
		close(f);
	}
	if (ZOO_BREAK(NONBLOCK))
		fcntl(fd, F_SETFL, 0);
	if (ZOO_BREAK(DIR_WATCH) && inotify_add_watch(fd, dir, IN_DELETE) != wd_dir)
		zoo_die("change the directory's watch");
	if (ZOO_BREAK(FILE_WATCH) && inotify_add_watch(fd, file, IN_ATTRIB) != wd_file)
		zoo_die("change the file's watch");
	if (ZOO_BREAK(NEXT_WD)) {
		wd = inotify_add_watch(fd, other, IN_CREATE);
		if (wd < 0 || inotify_rm_watch(fd, wd))
			zoo_die("add and remove a watch");
		drain(fd);
	}
	zoo_wait();

	ZOO_CHECK(NO_EVENTS, drain(fd) == 0, "events queued after restore");
	flags = fcntl(fd, F_GETFL);
	ZOO_CHECK(NONBLOCK, flags >= 0 && (flags & O_NONBLOCK), "inotify lost O_NONBLOCK (%#x)",
		  flags);
	in_info = in_fdinfo(fd, wd_dir, ino_of(dir), dir_mask);
	wd = inotify_add_watch(fd, dir, dir_mask);
	f = open(zoo_path("watched/new"), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	if (f < 0)
		zoo_die("create in the watched directory");
	close(f);
	got = next_event(fd, &ev, name, sizeof(name));
	ZOO_CHECK(DIR_WATCH,
		  in_info && wd == wd_dir && got && ev.wd == wd_dir && (ev.mask & IN_CREATE) &&
			  strcmp(name, "new") == 0,
		  "watch %d of the directory: in fdinfo %d, re-added as %d, or no IN_CREATE \"new\"",
		  wd_dir, in_info, wd);
	in_info = in_fdinfo(fd, wd_file, ino_of(file), file_mask);
	wd = inotify_add_watch(fd, file, file_mask);
	f = open(file, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (f < 0 || write(f, "x", 1) != 1)
		zoo_die("write the watched file");
	close(f);
	got = next_event(fd, &ev, name, sizeof(name));
	ZOO_CHECK(FILE_WATCH,
		  in_info && wd == wd_file && got && ev.wd == wd_file && (ev.mask & IN_MODIFY),
		  "watch %d of the file: in fdinfo %d, re-added as %d, or no IN_MODIFY", wd_file,
		  in_info, wd);
	wd = inotify_add_watch(fd, fresh, IN_CREATE);
	ZOO_CHECK(NEXT_WD, wd == 5, "a new watch got wd %d, want 5", wd);
	return zoo_done();
}
