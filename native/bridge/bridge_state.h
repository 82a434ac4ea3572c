// The bridge's one worker pool, shared by its extension and filter entry points (one script
// may export both; one DLL serves both, as in pywin32).
#pragma once
#include <string>

#include "manifest_settings.h"
#include "worker_pool.h"

namespace isapi::bridge {

enum class Role { Extension = 1, Filter = 2 };

// Starts the pool on first use. With waitForReady (GetExtensionVersion) it waits for the
// workers' Ready messages and fails if none starts; GetFilterVersion must answer at once.
WorkerPool* acquire_pool(Role role, bool waitForReady, std::string& error);
// The entry point is done with the pool (TerminateExtension / TerminateFilter); the last one
// stops the workers.
void release_pool(Role role, int drainMs);
WorkerPool* current_pool();
const ManifestSettings& manifest_settings();

}  // namespace isapi::bridge
