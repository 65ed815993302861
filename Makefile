# Postern build. The variables below are the dependency graph: lib/ is built in
# layers (a module includes only modules of lower layers; scripts/lint checks it)
# and each program and unit test names the modules it links.
#   make            build everything into build/ (programs in build/bin/)
#   make SAN=1      the same with ASan+UBSan, into build/san/
#   make check      build, lint, unit tests (normal and SAN), fuzz runs, integration tests
#   make fuzz       libFuzzer targets (clang) into build/fuzz/
#   make run        build and start a self-contained instance under ./run/
#   make install    install (DESTDIR, PREFIX); make uninstall
SHELL := /bin/bash
.SUFFIXES:
.DELETE_ON_ERROR:

LIB_L0 := util
LIB_L1 := log fs privs
LIB_L2 := config event ipc tls maps
LIB_L2_DNS := dns# runs on the event loop, so one step above event
LIB_L3 := address mime queue auth mailbox
LIB_L4 := service login delivery
LIB_ALL := $(LIB_L0) $(LIB_L1) $(LIB_L2) $(LIB_L2_DNS) $(LIB_L3) $(LIB_L4)

# Programs: <dir>_LIBS lists the lib/ modules it links. <dir>_BIN names the binary.
ALL_PROGRAMS := master postern smtpd qmgr local pickup sendmail showq auth smtp testd dnsq
BASE_LIBS := config log fs privs util
master_LIBS := service queue event ipc $(BASE_LIBS)
postern_LIBS := auth service queue event ipc maps $(BASE_LIBS)
testd_LIBS := service queue event $(BASE_LIBS)
smtpd_LIBS := auth service queue tls event ipc maps dns $(BASE_LIBS)
qmgr_LIBS := delivery service queue event ipc maps $(BASE_LIBS)
local_LIBS := delivery service queue mailbox event ipc maps $(BASE_LIBS)
pickup_LIBS := address service queue event ipc $(BASE_LIBS)
sendmail_LIBS := delivery address queue event ipc maps service $(BASE_LIBS)
showq_LIBS := service queue event ipc $(BASE_LIBS)
auth_DIR := authd
auth_LIBS := auth service queue event ipc maps $(BASE_LIBS)
smtp_LIBS := delivery auth service queue tls event ipc maps dns $(BASE_LIBS)
testd_DIR := t/testd
dnsq_DIR := t/dnsq
dnsq_LIBS := dns event log util

# Unit tests: t/unit/<name>_test.cpp links the modules in <name>_test_LIBS
# (and <name>_test_OBJS: logic objects of a program, never its main.cpp).
UNIT_TESTS := $(patsubst t/unit/%_test.cpp,%,$(wildcard t/unit/*_test.cpp))
util_test_LIBS := util
log_test_LIBS := log util
fs_test_LIBS := fs log util
mailbox_test_LIBS := mailbox fs log util
privs_test_LIBS := privs log util
config_test_LIBS := $(BASE_LIBS)
ipc_test_LIBS := ipc log util
maps_test_LIBS := maps fs log util
event_test_LIBS := event log util
dns_test_LIBS := dns event log util
service_test_LIBS := service queue event ipc $(BASE_LIBS)
master_test_LIBS := event ipc $(BASE_LIBS)
master_test_OBJS := master/services
queue_test_LIBS := queue event fs log util
tls_test_LIBS := tls event fs log util
smtpd_protocol_test_LIBS := util
smtpd_protocol_test_OBJS := smtpd/protocol
smtpd_data_test_LIBS := util
smtpd_data_test_OBJS := smtpd/data
smtpd_session_test_LIBS := auth event ipc maps $(BASE_LIBS)
smtpd_session_test_OBJS := smtpd/session smtpd/protocol smtpd/data
delivery_test_LIBS := delivery queue ipc event fs log util
qmgr_test_LIBS := delivery queue event ipc maps $(BASE_LIBS)
qmgr_test_OBJS := $(patsubst %.cpp,%,$(filter-out qmgr/main.cpp,$(wildcard qmgr/*.cpp)))
qmgr_sched_test_LIBS := $(qmgr_test_LIBS)
qmgr_sched_test_OBJS := $(qmgr_test_OBJS)
address_test_LIBS := address util
pickup_test_LIBS := address queue event ipc $(BASE_LIBS)
pickup_test_OBJS := $(patsubst %.cpp,%,$(filter-out pickup/main.cpp,$(wildcard pickup/*.cpp)))
sendmail_test_LIBS := delivery address queue event ipc maps service $(BASE_LIBS)
sendmail_test_OBJS := $(patsubst %.cpp,%,$(filter-out sendmail/main.cpp,$(wildcard sendmail/*.cpp)))
local_test_LIBS := delivery queue mailbox event ipc maps $(BASE_LIBS)
local_test_OBJS := $(patsubst %.cpp,%,$(filter-out local/main.cpp,$(wildcard local/*.cpp)))
auth_test_LIBS := auth event ipc maps fs log util
authd_test_LIBS := auth service queue event ipc maps $(BASE_LIBS)
authd_test_OBJS := $(patsubst %.cpp,%,$(filter-out authd/main.cpp,$(wildcard authd/*.cpp)))
smtp_protocol_test_LIBS := auth event ipc maps $(BASE_LIBS)
smtp_protocol_test_OBJS := smtp/protocol
smtp_dest_test_LIBS := dns event log util
smtp_dest_test_OBJS := smtp/dest

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
SAN ?=
BUILD := build$(if $(SAN),/san)
CXX ?= g++
PKGS := libevent_core libevent_openssl libssl libcrypto pam
CXXFLAGS ?= -O2 -g
VERSION := 0.1
CXXFLAGS += -DPOSTERN_VERSION=\"$(VERSION)\" -std=c++20 -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wno-missing-field-initializers -pipe -Ilib -I. -MMD -MP \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS := -Wl,--as-needed $(shell pkg-config --libs $(PKGS) 2>/dev/null) -ldb -lcrypt -lpthread -lunbound
ifneq ($(SAN),)
CXXFLAGS += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

PREFIX ?= /usr
DESTDIR ?=
SBINDIR := $(PREFIX)/sbin
LIBEXECDIR := $(PREFIX)/libexec/postern
SYSCONFDIR ?= /etc/postern

mod_srcs = $(wildcard lib/$(1)/*.cpp)
mod_objs = $(patsubst %.cpp,$(BUILD)/obj/%.o,$(foreach m,$(1),$(call mod_srcs,$(m))))
prog_dir = $(or $($(1)_DIR),$(1))
PROGRAMS := $(foreach p,$(ALL_PROGRAMS),$(if $(wildcard $(call prog_dir,$(p))/main.cpp),$(p)))

define program
$(BUILD)/bin/$(1): $(patsubst %.cpp,$(BUILD)/obj/%.o,$(wildcard $(call prog_dir,$(1))/*.cpp)) $(call mod_objs,$($(1)_LIBS))
	@mkdir -p $$(@D)
	$$(CXX) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach p,$(PROGRAMS),$(eval $(call program,$(p))))

define unit_test
$(BUILD)/t/$(1)_test: $(BUILD)/obj/t/unit/$(1)_test.o $(BUILD)/obj/t/unit/catch_main.o \
                     $(patsubst %,$(BUILD)/obj/%.o,$($(1)_test_OBJS)) $(call mod_objs,$($(1)_test_LIBS))
	@mkdir -p $$(@D)
	$$(CXX) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach t,$(UNIT_TESTS),$(eval $(call unit_test,$(t))))

BINS := $(addprefix $(BUILD)/bin/,$(PROGRAMS))
TESTS := $(patsubst %,$(BUILD)/t/%_test,$(UNIT_TESTS))

.PHONY: all deps check fuzz unit integration lint run install uninstall clean bench
all: $(BINS)
tests: $(TESTS)

# Catch2 and <regex> trip g++ 12's maybe-uninitialized analysis under -O1 +
# sanitizers (false positives inside libstdc++); test code only. Test code is
# compiled without optimisation: the code under test keeps its flags, and the
# Catch2 test files build three times faster (make check time).
$(BUILD)/obj/t/unit/%.o: CXXFLAGS += -O0 -Wno-maybe-uninitialized

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) -c -o $@ $<

# Fuzzers (T1): fuzz/<name>.cpp -> build/fuzz/<name> with clang++ and libFuzzer, linking <name>_LIBS
# and <name>_OBJS like a unit test; objects in build/fuzz/obj/. t/run.py runs each for 10 s.
FUZZERS := $(patsubst fuzz/%.cpp,%,$(wildcard fuzz/*.cpp))
config_fuzz_LIBS := $(BASE_LIBS)
ipc_frame_fuzz_LIBS := ipc log util
maps_source_fuzz_LIBS := maps fs log util
queue_reader_fuzz_LIBS := queue event fs log util
smtpd_command_fuzz_LIBS := util
smtpd_command_fuzz_OBJS := smtpd/protocol
smtpd_data_fuzz_LIBS := util
smtpd_data_fuzz_OBJS := smtpd/data
dns_wire_fuzz_LIBS := dns event log util
defer_log_fuzz_LIBS := queue event fs log util
address_fuzz_LIBS := address util
sasl_fuzz_LIBS := auth event ipc maps fs log util
FUZZ_CXX ?= clang++
HAVE_FUZZ_CXX := $(shell command -v $(FUZZ_CXX))
FUZZ_CXXFLAGS := $(filter-out -O%,$(CXXFLAGS)) -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
fuzz_objs = $(patsubst %,build/fuzz/obj/%.o,fuzz/$(1) $($(1)_OBJS) $(basename $(foreach m,$($(1)_LIBS),$(call mod_srcs,$(m)))))
FUZZ_BINS := $(addprefix build/fuzz/,$(FUZZERS))
$(foreach f,$(FUZZERS),$(eval build/fuzz/$(f): $(call fuzz_objs,$(f))))
$(FUZZ_BINS): build/fuzz/%:
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -o $@ $^ $(LDLIBS)
build/fuzz/obj/%.o: %.cpp
	@mkdir -p $(@D)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -c -o $@ $<
fuzz: $(if $(HAVE_FUZZ_CXX),$(FUZZ_BINS))
	@$(if $(HAVE_FUZZ_CXX),:,echo "fuzz: $(FUZZ_CXX) not found, fuzzers skipped")

deps:
	@scripts/install-deps

# make check: one summary line at the end, counted over every suite.
check: deps
	@$(MAKE) --no-print-directory -j$(JOBS) all tests
	@$(MAKE) --no-print-directory -j$(JOBS) SAN=1 tests
	@$(MAKE) --no-print-directory -j$(JOBS) fuzz
	@/usr/bin/python3 t/run.py --build build --san-build build/san

unit: all tests
	@/usr/bin/python3 t/run.py --build $(BUILD) --unit-only

integration: all
	@/usr/bin/python3 t/run.py --build $(BUILD) --integration-only $(if $(T),--only $(T))

lint:
	@scripts/lint

run: deps all
	@scripts/make-run $(BUILD)/bin

install: all
	@scripts/install "$(DESTDIR)" "$(PREFIX)" "$(SYSCONFDIR)" "$(BUILD)/bin"

uninstall:
	@scripts/install --uninstall "$(DESTDIR)" "$(PREFIX)" "$(SYSCONFDIR)"

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
