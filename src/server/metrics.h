// What `GET /metrics` reports, in the Prometheus text format: requests by route and status, a
// latency histogram per route, tokens in and out, decode time (tokens/s = rate of the two), and
// the gauges the server passes in (slot store, queue depth). Thread-safe.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "icae/server/slot_store.h"

namespace icae::server {

class Metrics {
 public:
  Metrics();
  void request(const std::string& route, int status, double seconds);
  void tokens(const std::string& kind, int64_t n);  // kind: context, prompt, generated
  void decode_seconds(double s);

  struct Gauges {
    SlotStoreStats slots;
    int64_t queue_depth = 0;
    int64_t in_flight = 0;
    int64_t decode_rows = 0;     // rows in the running decode batch
    int64_t decode_steps = 0;    // steps it has run (counter, kept by the worker)
    int64_t row_steps = 0;       // tokens those steps decoded (counter)
    int64_t cancelled = 0;       // decodes whose client went away (counter)
    int64_t prefix_hits = 0;     // decodes that reused a kept slot prefix (counter)
    int64_t prefix_misses = 0;   // decodes that prefilled theirs (counter)
  };
  std::string prometheus(const Gauges& g) const;

 private:
  struct Histogram {
    std::vector<int64_t> counts;  // per bucket (not cumulative), the last one +Inf
    double sum = 0;
    int64_t n = 0;
  };
  const std::vector<double> buckets_;
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  std::map<std::string, Histogram> latency_;
  std::map<std::string, int64_t> tokens_;
  double decode_seconds_ = 0;
};

}  // namespace icae::server
