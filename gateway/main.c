// SPDX-License-Identifier: MIT
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "daemon.h"
#include "dlt645_link.h"
#include "log.h"
#include "preflight.h"
#include "probe.h"

static void usage(FILE *out)
{
	fprintf(out, "usage: meterhub -c FILE [--check-config] [--log-level LEVEL] [-v SUBSYS]...\n"
		     "       meterhub --probe -c FILE [--meter ID] [--log-level LEVEL] [-v SUBSYS]...\n"
		     "       meterhub --discover DEVICE [--baud N] [--parity none|even|odd]\n"
		     "\n"
		     "  -c, --config FILE   the YAML configuration\n"
		     "      --check-config  validate the configuration and exit; warn about\n"
		     "                      devices and directories that do not exist yet\n"
		     "      --probe         read every meter once, now, print what each said\n"
		     "                      and exit (no broker, no store)\n"
		     "      --meter ID      with --probe: only the meter ID\n"
		     "      --discover DEVICE  print the address of the one DL/T 645 meter\n"
		     "                      on DEVICE (default 2400 baud, even parity)\n"
		     "      --log-level LEVEL  the most verbose level logged: err, warning,\n"
		     "                      notice, info (the default) or debug\n"
		     "  -v, --verbose [SUBSYS]  log everything of SUBSYS, debug included:\n"
		     "                      main, bus, dlt645, modbus, mqtt, store, cmd,\n"
		     "                      config, sched, clock or all (the default);\n"
		     "                      bus, dlt645 and modbus log every frame in hex;\n"
		     "                      may be repeated\n"
		     "  -V, --version       print the version and exit\n"
		     "  -h, --help          this text\n"
		     "\n"
		     "Exit status: 0 on a clean shutdown or a valid configuration,\n"
		     "1 when the configuration has errors, 2 on a start-up failure\n"
		     "(bad options, a store that cannot be opened). --probe: 0 when\n"
		     "every meter read good, 1 when one did not, 2 on a configuration\n"
		     "error or an unknown --meter.\n");
}

/* A bad option: say which and why, then how to get help. Returns the exit status. */
__attribute__((format(printf, 2, 3))) static int bad_option(const char *option,
	const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "meterhub: %s: ", option);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'meterhub --help' for more information.\n");
	return 2;
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
		{ "verbose", optional_argument, NULL, 'v' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ "discover", required_argument, NULL, 'D' },
		{ "baud", required_argument, NULL, 'B' },
		{ "parity", required_argument, NULL, 'P' },
		{ "probe", no_argument, NULL, 'R' },
		{ "meter", required_argument, NULL, 'M' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct {
		const char *name;
		enum mh_parity parity;
	} parities[] = {
		{ "none", MH_PARITY_NONE },
		{ "even", MH_PARITY_EVEN },
		{ "odd", MH_PARITY_ODD },
	};
	const char *file = NULL, *device = NULL, *meter_id = NULL, *name;
	unsigned baud = 2400;
	enum mh_parity parity = MH_PARITY_EVEN;
	bool check_only = false, probe = false;
	struct mh_config *cfg;
	size_t meters = 0, i;
	int opt, rc, level, sub;

	while ((opt = getopt_long(argc, argv, "c:v::Vh", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			file = optarg;
			break;
		case 'C':
			check_only = true;
			break;
		case 'v':
			/* meterhub takes no operands: a word after a bare -v is its subsystem. */
			name = optarg;
			if (!name && optind < argc && argv[optind][0] != '-')
				name = argv[optind++];
			sub = name ? mh_log_sub_parse(name) : MH_LOG_SUB_COUNT;
			if (sub < 0)
				return bad_option("-v", "\"%s\" is not one of %s", name,
					mh_log_sub_names);
			mh_log_set_debug((enum mh_log_sub)sub);
			break;
		case 'L':
			level = mh_log_level_parse(optarg);
			if (level < 0)
				return bad_option("--log-level", "\"%s\" is not one of %s", optarg,
					mh_log_level_names);
			mh_log_set_level(level);
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
		case 'R':
			probe = true;
			break;
		case 'M':
			meter_id = optarg;
			break;
		case 'B':
			/* strtoul() made "abc" 0, and 0 meant the default: a typo ran at 2400. */
			rc = mh_config_parse_baud(optarg, &baud);
			if (rc == -EINVAL)
				return bad_option("--baud", "\"%s\" is not a whole number", optarg);
			if (rc < 0)
				return bad_option("--baud", "%s is not a standard baud rate; use one of %s",
					optarg, mh_config_baud_names);
			break;
		case 'P':
			for (i = 0; i < sizeof(parities) / sizeof(parities[0]); i++)
				if (!strcmp(optarg, parities[i].name))
					break;
			if (i == sizeof(parities) / sizeof(parities[0]))
				return bad_option("--parity", "\"%s\" is not one of none, even or odd",
					optarg);
			parity = parities[i].parity;
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (device && optind == argc)
		return discover(device, baud, parity);
	if (!file || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (probe && check_only)
		return bad_option("--probe", "cannot be combined with --check-config");
	if (meter_id && !probe)
		return bad_option("--meter", "is an option of --probe");

	rc = mh_config_load(file, NULL, NULL, &cfg);
	if (rc == -EINVAL) {
		fprintf(stderr, "%s: configuration not valid; nothing was started\n", file);
		return probe ? 2 : 1;
	}
	if (rc < 0) {
		fprintf(stderr, "%s: cannot read the configuration: %s\n", file, strerror(-rc));
		return probe ? 2 : 1;
	}
	for (size_t b = 0; b < cfg->n_buses; b++)
		meters += cfg->buses[b].n_meters;
	if (check_only) {
		mh_preflight_warn(cfg);
		printf("%s: configuration is valid: %zu buses, %zu meters, %zu profiles\n", file,
			cfg->n_buses, meters, cfg->n_profiles);
		mh_config_free(cfg);
		return 0;
	}

	/* Boundaries and the daily freeze follow the gateway's local time. */
	setenv("TZ", cfg->gateway.timezone, 1);
	tzset();
	if (probe) {
		rc = mh_probe_run(cfg, meter_id);
		if (rc == -ENOENT)
			fprintf(stderr, "meterhub: --meter: no meter \"%s\" in %s\n", meter_id,
				file);
		else if (rc < 0)
			fprintf(stderr, "meterhub: --probe: %s\n", strerror(-rc));
		mh_config_free(cfg);
		return rc < 0 ? 2 : rc > 0 ? 1 : 0;
	}
	rc = mh_daemon_run(cfg);
	mh_config_free(cfg);
	return rc < 0 ? 2 : 0;
}
