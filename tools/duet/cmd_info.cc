#include "commands.h"

namespace duet::cli {

Runner add_info(CLI::App& app) {
  app.add_subcommand("info", "(not yet)");
  return [] { return 0; };
}

}  // namespace duet::cli
