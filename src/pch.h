// Precompiled header: libtorch's umbrella header costs tens of seconds per translation unit, so every
// target compiles it once through this file (CMake's target_precompile_headers).
#pragma once
#include <torch/torch.h>
#include <fmt/format.h>
