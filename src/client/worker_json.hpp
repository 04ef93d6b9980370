// A worker's health as JSON: `qmesh-cli workers --json` and the C ABI's qmesh_workers_json print
// the same object (keys: docs/user-guide.md).
#pragma once

#include <nlohmann/json.hpp>

#include "qmesh/client.hpp"

namespace qmesh {

// What names a model, the same keys in both listings.
template <class M>
nlohmann::json model_identity_json(const M& m) {
  return {{"name", m.name},           {"root", m.root},
          {"architecture", m.architecture}, {"quantization", m.quantization},
          {"size_class", m.size_class}, {"parameters", m.parameters}};
}

inline nlohmann::json to_json(const qmesh::WorkerModel& m) {
  auto j = model_identity_json(m);
  j.update({{"context", m.context},
            {"loaded", m.loaded},
            {"chat_template", m.chat_template},
            {"slots_total", m.slots_total},
            {"slots_busy", m.slots_busy},
            {"prompt_tokens_per_second", m.prompt_tokens_per_second},
            {"generation_tokens_per_second", m.generation_tokens_per_second}});
  return j;
}

inline nlohmann::json to_json(const qmesh::ModelInfo& m) {
  auto j = model_identity_json(m);
  j.update({{"workers", m.workers}, {"loaded", m.loaded}, {"slots_free", m.slots_free}});
  return j;
}

inline nlohmann::json to_json(const qmesh::WorkerInfo& w) {
  auto models = nlohmann::json::array();
  for (const auto& m : w.models) models.push_back(to_json(m));
  return {{"id", w.id},
          {"endpoint", w.endpoint},
          {"available", w.available},
          {"model", w.model},
          {"model_hash", w.model_hash},
          {"architecture", w.architecture},
          {"quantization", w.quantization},
          {"parameters", w.parameters},
          {"context", w.context},
          {"slots_total", w.slots_total},
          {"slots_busy", w.slots_busy},
          {"queue_length", w.queue_length},
          {"queue_capacity", w.queue_capacity},
          {"cpu", w.cpu},
          {"memory", w.memory},
          {"prompt_tokens_per_second", w.prompt_tokens_per_second},
          {"generation_tokens_per_second", w.generation_tokens_per_second},
          {"max_tokens", w.max_tokens},
          {"software", w.software},
          {"nat", w.nat},
          {"expires_in_s", w.expires_in_s},
          {"score", w.score},
          {"models", models},
          {"models_omitted", w.models_omitted}};
}

}  // namespace qmesh
