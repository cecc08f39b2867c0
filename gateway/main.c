// SPDX-License-Identifier: MIT
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "daemon.h"
#include "log.h"

static void usage(FILE *out)
{
	fprintf(out, "usage: meterhub -c FILE [--check-config] [-v]\n"
		     "\n"
		     "  -c, --config FILE   the YAML configuration\n"
		     "      --check-config  validate the configuration and exit\n"
		     "  -v, --verbose       log debug messages\n"
		     "  -V, --version       print the version and exit\n"
		     "  -h, --help          this text\n"
		     "\n"
		     "Exit status: 0 on a clean shutdown or a valid configuration,\n"
		     "1 when the configuration has errors, 2 on a start-up failure.\n");
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *file = NULL;
	bool check_only = false;
	struct mh_config *cfg;
	size_t meters = 0;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "c:vVh", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			file = optarg;
			break;
		case 'C':
			check_only = true;
			break;
		case 'v':
			mh_log_set_level(LOG_DEBUG);
			break;
		case 'V':
			printf("meterhub %s\n", MH_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!file || optind != argc) {
		usage(stderr);
		return 2;
	}

	rc = mh_config_load(file, NULL, NULL, &cfg);
	if (rc == -EINVAL) {
		fprintf(stderr, "%s: configuration not valid; nothing was started\n", file);
		return 1;
	}
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", file, strerror(-rc));
		return 1;
	}
	for (size_t b = 0; b < cfg->n_buses; b++)
		meters += cfg->buses[b].n_meters;
	if (check_only) {
		printf("%s: configuration is valid: %zu buses, %zu meters, %zu profiles\n", file,
			cfg->n_buses, meters, cfg->n_profiles);
		mh_config_free(cfg);
		return 0;
	}

	/* Boundaries and the daily freeze follow the gateway's local time. */
	setenv("TZ", cfg->gateway.timezone, 1);
	tzset();
	rc = mh_daemon_run(cfg);
	mh_config_free(cfg);
	return rc < 0 ? 2 : 0;
}
