// NAME
//   postern/control.hpp - start, stop, reload and status of an instance
// PURPOSE
//   What `postern start|stop|reload|status` do: find the running master
//   through its locked pid file, signal it, wait for the result, and return a
//   sysexits.h code with a message a person can act on. Not the supervisor
//   itself (master/).
// SYNOPSIS
//   return control::start(config_dir);   // also stop, reload, status
#pragma once

#include <string>

namespace postern::control {

int start(const std::string& config_dir);
int stop(const std::string& config_dir);
int reload(const std::string& config_dir);
int status(const std::string& config_dir);

}  // namespace postern::control
