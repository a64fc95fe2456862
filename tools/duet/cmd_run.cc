#include "commands.h"

namespace duet::cli {

Runner add_run(CLI::App& app) {
  app.add_subcommand("run", "(not yet)");
  return [] { return 0; };
}

}  // namespace duet::cli
