// SPDX-License-Identifier: MIT
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "daemon.h"
#include "dlt645_link.h"
#include "log.h"

static void usage(FILE *out)
{
	fprintf(out, "usage: meterhub -c FILE [--check-config] [-v]\n"
		     "       meterhub --discover DEVICE [--baud N] [--parity none|even|odd]\n"
		     "\n"
		     "  -c, --config FILE   the YAML configuration\n"
		     "      --check-config  validate the configuration and exit\n"
		     "      --discover DEVICE  print the address of the one DL/T 645 meter\n"
		     "                      on DEVICE (default 2400 baud, even parity)\n"
		     "  -v, --verbose       log debug messages\n"
		     "  -V, --version       print the version and exit\n"
		     "  -h, --help          this text\n"
		     "\n"
		     "Exit status: 0 on a clean shutdown or a valid configuration,\n"
		     "1 when the configuration has errors, 2 on a start-up failure.\n");
}

/* Commissioning: find the address of a lone DL/T 645 meter. Exit 0 when found. */
static int discover(const char *device, unsigned baud, enum mh_parity parity)
{
	struct mh_serial_params params = {
		.device = device,
		.baud = baud,
		.parity = parity,
		.response_timeout_ms = 1000,
		.byte_timeout_ms = 20 + 10 * 11000 / baud,
	};
	struct mh_dlt645_link *link;
	uint8_t addr[MH_DLT645_ADDR_LEN];
	char text[13];
	int rc = mh_dlt645_link_open(&params, &link);

	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", device, strerror(-rc));
		return 2;
	}
	rc = mh_dlt645_link_discover(link, addr);
	mh_dlt645_link_free(link);
	if (rc < 0) {
		fprintf(stderr, "%s: no answer to read-address (%s); is exactly one meter connected?\n",
			device, rc == -ETIMEDOUT ? "silence" : strerror(-rc));
		return 1;
	}
	mh_dlt645_addr_format(addr, text);
	printf("%s\n", text);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ "discover", required_argument, NULL, 'D' },
		{ "baud", required_argument, NULL, 'B' },
		{ "parity", required_argument, NULL, 'P' },
		{ NULL, 0, NULL, 0 },
	};
	const char *file = NULL, *device = NULL;
	unsigned baud = 2400;
	enum mh_parity parity = MH_PARITY_EVEN;
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
		case 'D':
			device = optarg;
			break;
		case 'B':
			baud = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'P':
			if (!strcmp(optarg, "none") || !strcmp(optarg, "even") || !strcmp(optarg, "odd")) {
				parity = optarg[0] == 'n' ? MH_PARITY_NONE
					 : optarg[0] == 'e' ? MH_PARITY_EVEN
							    : MH_PARITY_ODD;
				break;
			}
			usage(stderr);
			return 2;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (device && optind == argc)
		return discover(device, baud ? baud : 2400, parity);
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
