// Settings the packer records in <name>.manifest.json that the bridge needs before any worker
// runs (the filter's notification flags: GetFilterVersion answers without waiting for a worker).
#pragma once
#include <cstdint>
#include <string>

namespace isapi::bridge {

struct ManifestSettings {
  bool found = false;
  uint32_t filterFlags = 0;      // 0: the script exports no filter
  bool filterFailClosed = true;  // on a timeout or a dead worker: 503, or let the request pass
  int filterTimeoutMs = 5000;
};

// Reads the manifest beside the bridge. The packer writes these keys once, at the top level,
// with plain values, so a key scan is enough (the bridge carries no JSON library).
ManifestSettings read_manifest_settings(const std::string& manifestPath);

}  // namespace isapi::bridge
