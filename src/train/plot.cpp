#include "icae/train/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "icae/util/error.h"

namespace icae::train {

namespace {

struct Series {
  const char* key;
  const char* label;
  const char* color;
  bool dashed;
  int axis;  // 0 loss (left), 1 BLEU (right), 2 lr (strip)
};

constexpr Series kSeries[] = {
    {"loss", "train loss", "#444444", false, 0},
    {"ae_loss", "train AE", "#1f77b4", false, 0},
    {"lm_loss", "train LM", "#2ca02c", false, 0},
    {"ft_loss", "train FT", "#9467bd", false, 0},
    {"eval_ae_loss", "eval AE", "#1f77b4", true, 0},
    {"eval_lm_loss", "eval LM", "#2ca02c", true, 0},
    {"eval_ft_loss", "eval FT", "#9467bd", true, 0},
    {"eval_plain_lm_loss", "eval plain LM (no slots)", "#d62728", true, 0},
    {"eval_ae_bleu", "eval AE BLEU-4 (right axis)", "#ff7f0e", false, 1},
    {"lr", "learning rate", "#7f7f7f", false, 2},
};

std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '&') o += "&amp;";
    else if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", v);
  return b;
}

std::string tick_label(double v) {
  char b[32];
  if (v != 0 && (std::fabs(v) < 1e-2 || std::fabs(v) >= 1e5)) std::snprintf(b, sizeof b, "%.0e", v);
  else std::snprintf(b, sizeof b, "%g", v);
  return b;
}

// "Nice" tick step for a range (1, 2 or 5 times a power of ten).
double nice_step(double range, int ticks) {
  if (!(range > 0)) return 1;
  const double raw = range / ticks, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

}  // namespace

std::string plot_metrics_svg(const std::string& path_in, const std::string& title) {
  std::string path = path_in;
  {
    std::ifstream probe(path + "/metrics.jsonl");
    if (probe.good()) path += "/metrics.jsonl";
  }
  std::ifstream in(path);
  ICAE_CHECK(in.good(), ErrorKind::Io, path + ": cannot open (give a run folder or its metrics.jsonl)");
  std::map<std::string, std::vector<std::pair<double, double>>> data;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      continue;  // a torn last line of a killed run
    }
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number()) continue;
    const double step = j["step"].get<double>();
    for (const auto& s : kSeries)
      if (j.contains(s.key) && j[s.key].is_number()) {
        const double v = j[s.key].get<double>();
        if (std::isfinite(v)) data[s.key].push_back({step, v});
      }
  }
  ICAE_CHECK(!data.empty(), ErrorKind::BadInput, path + ": no metrics to plot");

  // Layout: main panel (losses + BLEU), strip (lr), legend on the right.
  const double W = 960, H = 600, left = 70, right = 300, top = 40, main_h = 380, gap = 50, strip_h = 90;
  const double pw = W - left - right;
  double x_max = 1, loss_min = std::numeric_limits<double>::max(), loss_max = 0, lr_max = 0;
  for (const auto& s : kSeries)
    for (const auto& [x, y] : data[s.key]) {
      x_max = std::max(x_max, x);
      if (s.axis == 0) {
        loss_min = std::min(loss_min, y);
        loss_max = std::max(loss_max, y);
      }
      if (s.axis == 2) lr_max = std::max(lr_max, y);
    }
  if (loss_min > loss_max) loss_min = 0, loss_max = 1;
  loss_min = std::max(0.0, std::floor(loss_min));
  loss_max = std::ceil(loss_max * 1.05 + 1e-9);
  if (loss_max <= loss_min) loss_max = loss_min + 1;
  if (lr_max <= 0) lr_max = 1;
  auto X = [&](double x) { return left + pw * x / x_max; };
  auto Y = [&](double y, int axis) {
    if (axis == 0) return top + main_h * (1 - (y - loss_min) / (loss_max - loss_min));
    if (axis == 1) return top + main_h * (1 - std::clamp(y, 0.0, 1.0));
    return top + main_h + gap + strip_h * (1 - y / lr_max);
  };

  std::ostringstream o;
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W
    << " " << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << left << "\" y=\"24\" font-size=\"15\">" << escape(title.empty() ? path : title) << "</text>\n";
  // Axes and grid.
  const double ls = nice_step(loss_max - loss_min, 6);
  for (double v = loss_min; v <= loss_max + 1e-9; v += ls) {
    o << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << num(Y(v, 0)) << "\" y2=\"" << num(Y(v, 0))
      << "\" stroke=\"#e5e5e5\"/>\n<text x=\"" << left - 6 << "\" y=\"" << num(Y(v, 0) + 4)
      << "\" text-anchor=\"end\">" << tick_label(v) << "</text>\n";
  }
  for (double v = 0; v <= 1.0001; v += 0.25)
    o << "<text x=\"" << left + pw + 6 << "\" y=\"" << num(Y(v, 1) + 4) << "\" fill=\"#ff7f0e\">" << tick_label(v)
      << "</text>\n";
  const double xs = nice_step(x_max, 8);
  for (double v = 0; v <= x_max + 1e-9; v += xs) {
    o << "<line x1=\"" << num(X(v)) << "\" x2=\"" << num(X(v)) << "\" y1=\"" << top << "\" y2=\"" << top + main_h
      << "\" stroke=\"#f0f0f0\"/>\n<text x=\"" << num(X(v)) << "\" y=\"" << top + main_h + 16
      << "\" text-anchor=\"middle\">" << tick_label(v) << "</text>\n";
  }
  o << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << main_h
    << "\" fill=\"none\" stroke=\"#888\"/>\n"
    << "<text x=\"" << left - 50 << "\" y=\"" << top + main_h / 2 << "\" transform=\"rotate(-90 " << left - 50 << " "
    << top + main_h / 2 << ")\" text-anchor=\"middle\">loss (cross-entropy, nats)</text>\n"
    << "<text x=\"" << left + pw / 2 << "\" y=\"" << top + main_h + 32 << "\" text-anchor=\"middle\">update</text>\n";
  const double sy = top + main_h + gap;
  o << "<rect x=\"" << left << "\" y=\"" << sy << "\" width=\"" << pw << "\" height=\"" << strip_h
    << "\" fill=\"none\" stroke=\"#888\"/>\n<text x=\"" << left - 6 << "\" y=\"" << sy + 10
    << "\" text-anchor=\"end\">" << tick_label(lr_max) << "</text>\n<text x=\"" << left - 6 << "\" y=\"" << sy + strip_h
    << "\" text-anchor=\"end\">0</text>\n";
  // Curves and legend.
  double ly = top + 10;
  for (const auto& s : kSeries) {
    const auto& pts = data[s.key];
    if (pts.empty()) continue;
    o << "<polyline fill=\"none\" stroke=\"" << s.color << "\" stroke-width=\"1.6\""
      << (s.dashed ? " stroke-dasharray=\"6 3\"" : "") << " points=\"";
    for (const auto& [x, y] : pts) o << num(X(x)) << "," << num(Y(y, s.axis)) << " ";
    o << "\"/>\n";
    if (pts.size() == 1 || s.dashed)
      for (const auto& [x, y] : pts)
        o << "<circle cx=\"" << num(X(x)) << "\" cy=\"" << num(Y(y, s.axis)) << "\" r=\"2.5\" fill=\"" << s.color
          << "\"/>\n";
    o << "<line x1=\"" << W - right + 50 << "\" x2=\"" << W - right + 80 << "\" y1=\"" << ly << "\" y2=\"" << ly
      << "\" stroke=\"" << s.color << "\" stroke-width=\"2\"" << (s.dashed ? " stroke-dasharray=\"6 3\"" : "")
      << "/>\n<text x=\"" << W - right + 86 << "\" y=\"" << ly + 4 << "\">" << escape(s.label) << " (last "
      << tick_label(std::round(pts.back().second * 1e4) / 1e4) << ")</text>\n";
    ly += 20;
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace icae::train
