// Learning curves of a run as an SVG a person can open in a browser: losses (train AE / LM / FT,
// eval AE / LM / FT and the plain-LM reference) on the left axis, eval BLEU on the right axis,
// and the learning rate in a strip below. Written by hand: no Python or plotting library.
#pragma once
#include <string>

namespace icae::train {

// Reads RUN_DIR/metrics.jsonl (or a metrics.jsonl path) and returns the SVG document.
// Throws icae::Error when there is nothing to plot.
std::string plot_metrics_svg(const std::string& metrics_path, const std::string& title = "");

}  // namespace icae::train
