// SPDX-License-Identifier: MIT
/*
 * The log (protocols/log.h) and the Modbus frames it shows
 * (protocols/modbus_trace.h): -v SUBSYS opens one subsystem, debug included,
 * whatever the level; frames are logged under -v bus or their protocol's
 * subsystem, in the documented layout; a Modbus frame rebuilt for the log
 * is the one on the wire. The Modbus vectors are public: the read holding
 * registers, read coils and write single coil examples of the Simply
 * Modbus pages (simplymodbus.ca FC01, FC03, FC05: unit 0x11), and the
 * widely quoted "01 03 00 00 00 0A C5 CD" request and "01 83 02 C0 F1"
 * exception reply.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "helpers.h"
#include "log.h"
#include "modbus_trace.h"

/* stderr goes here while a test looks at what was logged. */
static FILE *captured;
static int saved_stderr = -1;

static void capture(void)
{
	fflush(stderr);
	captured = tmpfile();
	assert_non_null(captured);
	saved_stderr = dup(2);
	assert_true(saved_stderr >= 0);
	assert_true(dup2(fileno(captured), 2) >= 0);
}

/* What was logged since capture(), without the time and level prefix of each line. */
static char *release(void)
{
	static char text[16384];
	size_t n;

	fflush(stderr);
	assert_true(dup2(saved_stderr, 2) >= 0);
	close(saved_stderr);
	rewind(captured);
	n = fread(text, 1, sizeof(text) - 1, captured);
	text[n] = '\0';
	fclose(captured);
	return text;
}

static void test_subsystem_names(void **state)
{
	assert_int_equal(mh_log_sub_parse("bus"), MH_LOG_BUS);
	assert_int_equal(mh_log_sub_parse("dlt645"), MH_LOG_DLT645);
	assert_int_equal(mh_log_sub_parse("modbus"), MH_LOG_MODBUS);
	assert_int_equal(mh_log_sub_parse("main"), MH_LOG_MAIN);
	assert_int_equal(mh_log_sub_parse("clock"), MH_LOG_CLOCK);
	assert_int_equal(mh_log_sub_parse("all"), MH_LOG_SUB_COUNT);
	assert_int_equal(mh_log_sub_parse("loud"), -EINVAL);
	assert_int_equal(mh_log_sub_parse(""), -EINVAL);
	/* Every name the messages list is one the parser takes. */
	char *names = strdup(mh_log_sub_names), *save = NULL;
	int n = 0;

	assert_non_null(names);
	for (char *w = strtok_r(names, ", ", &save); w; w = strtok_r(NULL, ", ", &save))
		if (strcmp(w, "or")) {
			assert_true(mh_log_sub_parse(w) >= 0);
			n++;
		}
	assert_int_equal(n, MH_LOG_SUB_COUNT + 1);
	free(names);
}

/* One scenario: the state is the process's, as in the daemon. */
static void test_levels_and_subsystems(void **state)
{
	char *log;

	mh_log_set_level(LOG_ERR);
	assert_false(mh_log_debug_on(MH_LOG_BUS));
	assert_false(mh_log_frames_on(MH_LOG_DLT645));
	capture();
	mh_log_notice(BUS, "hidden notice");
	mh_log_err(BUS, "shown error");
	log = release();
	assert_null(strstr(log, "hidden notice"));
	assert_non_null(strstr(log, "error [BUS] shown error\n"));

	/* -v bus: every BUS line, debug included; the others still at err. */
	mh_log_set_debug(MH_LOG_BUS);
	assert_true(mh_log_debug_on(MH_LOG_BUS));
	assert_false(mh_log_debug_on(MH_LOG_MQTT));
	assert_true(mh_log_frames_on(MH_LOG_DLT645));
	assert_true(mh_log_frames_on(MH_LOG_MODBUS));
	capture();
	mh_log_debug(BUS, "bus debug %d", 1);
	mh_log_notice(BUS, "bus notice");
	mh_log_notice(MQTT, "mqtt notice");
	mh_log_debug(MQTT, "mqtt debug");
	log = release();
	assert_non_null(strstr(log, "debug [BUS] bus debug 1\n"));
	assert_non_null(strstr(log, "notice [BUS] bus notice\n"));
	assert_null(strstr(log, "mqtt"));

	/* --log-level debug opens everything; going back keeps what -v chose. */
	mh_log_set_level(LOG_DEBUG);
	assert_true(mh_log_debug_on(MH_LOG_MQTT));
	mh_log_set_level(LOG_NOTICE);
	assert_false(mh_log_debug_on(MH_LOG_MQTT));
	assert_true(mh_log_debug_on(MH_LOG_BUS));

	/* -v modbus alone would not log DL/T 645 frames; -v all is everything. */
	mh_log_set_debug(MH_LOG_MODBUS);
	assert_false(mh_log_debug_on(MH_LOG_DLT645));
	mh_log_set_debug(MH_LOG_SUB_COUNT);
	for (int s = 0; s < MH_LOG_SUB_COUNT; s++)
		assert_true(mh_log_debug_on((enum mh_log_sub)s));
}

static void test_frame_lines(void **state)
{
	uint8_t big[400];
	const uint8_t frame[] = { 0x68, 0x01, 0xAB, 0x16 };
	char *log, *cut;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)i;
	mh_log_set_debug(MH_LOG_BUS);
	capture();
	mh_log_frame(MH_LOG_DLT645, "/dev/ttyS1", "tx", frame, sizeof(frame), NULL);
	mh_log_frame(MH_LOG_DLT645, "/dev/ttyS1", "rx", frame, 0, "no reply");
	mh_log_frame(MH_LOG_MODBUS, "/dev/ttyS2", "rx", NULL, 0, "garbled");
	mh_log_frame(MH_LOG_MODBUS, "/dev/ttyS2", "rx", big, sizeof(big), NULL);
	log = release();
	assert_non_null(strstr(log, "debug [DLT645] /dev/ttyS1: tx 4 bytes: 68 01 AB 16\n"));
	assert_non_null(strstr(log, "debug [DLT645] /dev/ttyS1: rx 0 bytes (no reply)\n"));
	assert_non_null(strstr(log, "debug [MODBUS] /dev/ttyS2: rx (garbled)\n"));
	cut = strstr(log, "debug [MODBUS] /dev/ttyS2: rx 400 bytes: 00 01 02 ");
	assert_non_null(cut);
	/* The 300th byte (0x2B after 256 + 43) is the last shown. */
	assert_non_null(strstr(cut, " 2A 2B ... (100 more)\n"));
}

/* The first Modbus line of @log, without its time, level and subsystem. */
static const char *modbus_line(char *log)
{
	char *p = strstr(log, "[MODBUS] ");

	assert_non_null(p);
	p += strlen("[MODBUS] ");
	p[strcspn(p, "\n")] = '\0';
	return p;
}

static void test_modbus_frames_are_the_wire_bytes(void **state)
{
	const struct mh_modbus_request holding = { MH_MODBUS_HOLDING, 0x0000, 10 };
	const struct mh_modbus_request three = { MH_MODBUS_HOLDING, 0x006B, 3 };
	const struct mh_modbus_request coils = { MH_MODBUS_COIL, 0x0013, 37 };
	const uint16_t regs[10] = { 0xAE41, 0x5652, 0x4340 };
	const uint8_t coil_bytes[] = { 0xCD, 0x6B, 0xB2, 0x0E, 0x1B };
	uint16_t bits[37];

	for (size_t i = 0; i < 37; i++)
		bits[i] = coil_bytes[i / 8] >> (i % 8) & 1;

	mh_log_set_debug(MH_LOG_MODBUS);
	capture();
	mh_modbus_trace_read("d", 1, &holding);
	assert_string_equal(modbus_line(release()), "d: tx 8 bytes: 01 03 00 00 00 0A C5 CD");

	capture();
	mh_modbus_trace_read_reply("d", 1, &holding, -EREMOTEIO, regs, 2);
	assert_string_equal(modbus_line(release()), "d: rx 5 bytes: 01 83 02 C0 F1");

	capture();
	mh_modbus_trace_read_reply("d", 1, &holding, -ETIMEDOUT, regs, 0);
	assert_string_equal(modbus_line(release()), "d: rx 0 bytes (no reply)");

	/* A register reply: byte count, big-endian registers, CRC low byte first. */
	capture();
	mh_modbus_trace_read("d", 0x11, &three);
	mh_modbus_trace_read_reply("d", 0x11, &three, 0, regs, 0);
	assert_non_null(strstr(release(), "d: rx 11 bytes: 11 03 06 AE 41 56 52 43 40 49 AD\n"));

	/* 37 coils: five bytes, the first coil in the lowest bit, the last byte padded with 0. */
	capture();
	mh_modbus_trace_read("d", 0x11, &coils);
	assert_string_equal(modbus_line(release()), "d: tx 8 bytes: 11 01 00 13 00 25 0E 84");
	capture();
	mh_modbus_trace_read_reply("d", 0x11, &coils, 0, bits, 0);
	assert_string_equal(modbus_line(release()),
		"d: rx 10 bytes: 11 01 05 CD 6B B2 0E 1B 45 E6");

	/* A coil write goes out as FF00 and comes back as its echo. */
	capture();
	mh_modbus_trace_write("d", 17, MH_MODBUS_COIL, 0x00AC, 1);
	assert_string_equal(modbus_line(release()), "d: tx 8 bytes: 11 05 00 AC FF 00 4E 8B");
	capture();
	mh_modbus_trace_write_reply("d", 17, MH_MODBUS_COIL, 0x00AC, 1, 0, 0);
	assert_string_equal(modbus_line(release()),
		"d: rx 8 bytes: 11 05 00 AC FF 00 4E 8B (echo)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_subsystem_names),
		cmocka_unit_test(test_levels_and_subsystems),
		cmocka_unit_test(test_frame_lines),
		cmocka_unit_test(test_modbus_frames_are_the_wire_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
