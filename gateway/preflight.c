// SPDX-License-Identifier: MIT
#include "preflight.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The same lines as `meterhub --check-config` prints (gateway/main.c). */
void mh_preflight_warn(const struct mh_config *cfg)
{
	struct stat st;

	for (size_t b = 0; b < cfg->n_buses; b++) {
		const struct mh_bus_config *bus = &cfg->buses[b];

		if (stat(bus->device, &st) == 0)
			continue;
		fprintf(stderr,
			"warning: %s:%u:%u: buses[%zu]: device %s %s; bus %s will keep trying to "
			"open it\n",
			bus->pos.file, bus->pos.line, bus->pos.col, b, bus->device,
			errno == ENOENT ? "does not exist yet" : strerror(errno), bus->name);
	}

	if (stat(cfg->store.path, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			fprintf(stderr,
				"warning: %s: store.path: %s is not a directory; meterhub cannot start "
				"with it\n",
				cfg->file, cfg->store.path);
	} else if (errno == ENOENT) {
		char *copy = strdup(cfg->store.path);
		const char *parent = copy ? dirname(copy) : "its parent";

		if (copy && stat(parent, &st) == 0 && S_ISDIR(st.st_mode))
			fprintf(stderr,
				"warning: %s: store.path: %s does not exist yet; meterhub creates it "
				"at start\n",
				cfg->file, cfg->store.path);
		else
			fprintf(stderr,
				"warning: %s: store.path: %s does not exist yet, nor does %s; meterhub "
				"cannot start until %s exists\n",
				cfg->file, cfg->store.path, parent, parent);
		free(copy);
	} else {
		fprintf(stderr, "warning: %s: store.path: %s: %s\n", cfg->file, cfg->store.path,
			strerror(errno));
	}
}
