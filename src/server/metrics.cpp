#include "metrics.h"

#include <cstdio>
#include <sstream>

namespace icae::server {

namespace {

std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", x);
  return buf;
}

}  // namespace

// Seconds: from a cached compress (milliseconds) to a long decode on a CPU (a minute).
Metrics::Metrics() : buckets_{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60} {}

void Metrics::request(const std::string& route, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{route, status}];
  Histogram& h = latency_[route];
  if (h.counts.empty()) h.counts.assign(buckets_.size() + 1, 0);
  size_t b = 0;
  while (b < buckets_.size() && seconds > buckets_[b]) ++b;
  ++h.counts[b];
  h.sum += seconds;
  ++h.n;
}

void Metrics::tokens(const std::string& kind, int64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  tokens_[kind] += n;
}

void Metrics::decode_seconds(double s) {
  std::lock_guard<std::mutex> lock(mutex_);
  decode_seconds_ += s;
}

std::string Metrics::prometheus(const Gauges& g) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::ostringstream o;
  o << "# HELP icae_requests_total HTTP requests by route and status.\n# TYPE icae_requests_total counter\n";
  for (const auto& [k, n] : requests_)
    o << "icae_requests_total{route=\"" << k.first << "\",status=\"" << k.second << "\"} " << n << "\n";
  o << "# HELP icae_request_seconds Request latency (to the last byte of a plain response; to the "
       "start of an event stream).\n# TYPE icae_request_seconds histogram\n";
  for (const auto& [route, h] : latency_) {
    int64_t cum = 0;
    for (size_t b = 0; b < buckets_.size(); ++b) {
      cum += h.counts[b];
      o << "icae_request_seconds_bucket{route=\"" << route << "\",le=\"" << num(buckets_[b]) << "\"} " << cum << "\n";
    }
    cum += h.counts.back();
    o << "icae_request_seconds_bucket{route=\"" << route << "\",le=\"+Inf\"} " << cum << "\n";
    o << "icae_request_seconds_sum{route=\"" << route << "\"} " << num(h.sum) << "\n";
    o << "icae_request_seconds_count{route=\"" << route << "\"} " << h.n << "\n";
  }
  o << "# HELP icae_tokens_total Tokens compressed (context), read (prompt) and generated.\n"
       "# TYPE icae_tokens_total counter\n";
  for (const char* kind : {"context", "prompt", "generated"}) {
    auto it = tokens_.find(kind);
    o << "icae_tokens_total{kind=\"" << kind << "\"} " << (it == tokens_.end() ? 0 : it->second) << "\n";
  }
  o << "# HELP icae_decode_seconds_total Time spent decoding (generated tokens / this = tokens/s).\n"
       "# TYPE icae_decode_seconds_total counter\nicae_decode_seconds_total "
    << num(decode_seconds_) << "\n";
  const SlotStoreStats& s = g.slots;
  o << "# HELP icae_slot_store_hits_total Slot lookups answered from memory.\n# TYPE icae_slot_store_hits_total counter\n"
    << "icae_slot_store_hits_total " << s.hits << "\n"
    << "# HELP icae_slot_store_disk_hits_total Slot lookups answered from the slot folder.\n"
       "# TYPE icae_slot_store_disk_hits_total counter\nicae_slot_store_disk_hits_total "
    << s.disk_hits << "\n"
    << "# HELP icae_slot_store_misses_total Slot lookups that found nothing.\n# TYPE icae_slot_store_misses_total counter\n"
    << "icae_slot_store_misses_total " << s.misses << "\n"
    << "# HELP icae_slot_store_evictions_total Entries dropped from memory.\n"
       "# TYPE icae_slot_store_evictions_total counter\nicae_slot_store_evictions_total "
    << s.evictions << "\n"
    << "# HELP icae_slot_store_entries Entries in memory.\n# TYPE icae_slot_store_entries gauge\nicae_slot_store_entries "
    << s.entries << "\n"
    << "# HELP icae_slot_store_bytes Bytes of slots in memory.\n# TYPE icae_slot_store_bytes gauge\nicae_slot_store_bytes "
    << s.bytes << "\n"
    << "# HELP icae_queue_depth Requests waiting for the model.\n# TYPE icae_queue_depth gauge\nicae_queue_depth "
    << g.queue_depth << "\n"
    << "# HELP icae_requests_in_flight Requests being handled.\n# TYPE icae_requests_in_flight gauge\n"
       "icae_requests_in_flight "
    << g.in_flight << "\n"
    << "# HELP icae_decode_rows Rows in the running decode batch.\n# TYPE icae_decode_rows gauge\nicae_decode_rows "
    << g.decode_rows << "\n"
    << "# HELP icae_decode_steps_total Decode steps (one token for every running row).\n"
       "# TYPE icae_decode_steps_total counter\nicae_decode_steps_total "
    << g.decode_steps << "\n"
    << "# HELP icae_decode_row_steps_total Tokens decoded by those steps (rows per step, summed; over steps: the "
       "mean batch width).\n# TYPE icae_decode_row_steps_total counter\nicae_decode_row_steps_total "
    << g.row_steps << "\n"
    << "# HELP icae_slot_prefix_hits_total Decodes whose slot prefix (template head + slots) was kept from an "
       "earlier question: only the prompt was prefilled.\n# TYPE icae_slot_prefix_hits_total counter\n"
       "icae_slot_prefix_hits_total "
    << g.prefix_hits << "\n"
    << "# HELP icae_slot_prefix_misses_total Decodes that prefilled their slot prefix.\n"
       "# TYPE icae_slot_prefix_misses_total counter\nicae_slot_prefix_misses_total "
    << g.prefix_misses << "\n"
    << "# HELP icae_requests_cancelled_total Decodes dropped from the queue or ended because their client closed "
       "the connection.\n# TYPE icae_requests_cancelled_total counter\nicae_requests_cancelled_total "
    << g.cancelled << "\n";
  return o.str();
}

}  // namespace icae::server
