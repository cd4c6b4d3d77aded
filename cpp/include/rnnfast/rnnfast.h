// rnnfast from C++: every public header (the layer API, the training toolkit, the runtime).
#pragma once
#include "rnnfast/layer.h"
#include "rnnfast/runtime.h"
#include "rnnfast/toolkit.h"
