// libFuzzer target for lib/config: main.cf parsing and expansion, master.cf.
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Ilib
//       fuzz/config_fuzz.cpp lib/config/*.cpp lib/util/*.cpp lib/log/*.cpp -o build/config_fuzz
// The input is used whole as main.cf and as master.cf; its first line is also
// passed as a -o override and as text for Config::expand.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace postern::config;
    std::string_view text(reinterpret_cast<const char*>(data), size);
    std::string_view first = text.substr(0, text.find('\n'));

    std::vector<std::string> warnings;
    auto settings = parse_main_cf(text, "main.cf", &warnings);
    if (!settings && settings.error().text.empty()) __builtin_trap();  // errors always say something

    auto cfg = Config::from_text(text, "main.cf", "/etc/postern", {}, &warnings);
    if (cfg) {
        (void)cfg->expand(text);
        (void)cfg->value("myhostname");
        if (cfg->params().config_directory != "/etc/postern") __builtin_trap();
    }
    auto with_o = Config::from_text("", "main.cf", "/etc/postern", {{"mail_name", std::string(first)}}, &warnings);
    if (with_o) (void)with_o->expand(first);

    auto services = parse_master_cf(text, "master.cf");
    if (services) {
        for (const auto& s : *services)
            if (s.command.empty() || s.command.find("..") != std::string::npos) __builtin_trap();
    } else if (services.error().text.empty()) {
        __builtin_trap();
    }
    (void)parse_time(first);
    (void)parse_bool(first);
    return 0;
}
