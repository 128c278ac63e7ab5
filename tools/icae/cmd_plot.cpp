// icae plot RUN_DIR: the learning curves of a training run as an SVG file.
#include <fstream>
#include <iostream>
#include <memory>

#include "command.h"
#include "icae/train/plot.h"
#include "icae/util/error.h"

namespace {

void setup(CLI::App& root) {
  struct Args {
    std::string run, out, title;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = root.add_subcommand(
      "plot", "Plot a training run's curves (train/eval losses, the plain-LM reference, eval BLEU, learning rate)\n"
              "from RUN_DIR/metrics.jsonl into an SVG file you can open in a browser.");
  c->add_option("run", a->run, "The run folder (or a metrics.jsonl file)")->required();
  c->add_option("-o,--out", a->out, "SVG file to write (default: RUN_DIR/loss.svg)");
  c->add_option("--title", a->title, "Title (default: the path)");
  c->callback([a] {
    const std::string svg = icae::train::plot_metrics_svg(a->run, a->title);
    const std::string out = a->out.empty() ? a->run + "/loss.svg" : a->out;
    std::ofstream f(out, std::ios::trunc);
    ICAE_CHECK(f.good(), icae::ErrorKind::Io, out + ": cannot create");
    f << svg;
    ICAE_CHECK(f.good(), icae::ErrorKind::Io, out + ": write failed");
    std::cerr << "wrote " << out << "\n";
  });
}

}  // namespace

ICAE_COMMAND(setup);
