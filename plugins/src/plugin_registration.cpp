// Entry points that make TensorRT find shfan::SubpixelDecode v1:
//  * a static registrar, run when the library is dlopen'ed (ctypes.CDLL, trtexec --staticPlugins);
//  * getCreators / setLoggerFinder for IPluginRegistry::loadLibrary (load_library in Python,
//    trtexec --dynamicPlugins).
// IPluginRegistry::loadLibrary's contract: it "will fail and return nullptr if any of the plugins
// are already registered". It dlopens the library first, which already runs the static registrar,
// so getCreators hands out the creator only when that registration did not take place (no
// registry at load time); otherwise it returns none and the creator stays statically registered.
// deregisterLibrary then dlcloses a library whose creator it never registered: the library is
// linked with -z nodelete (CMakeLists.txt), so it stays mapped and that creator never dangles.
// Both paths are exercised on a real TensorRT by `shfan-doctor --selftest`.
//
// The library is built with hidden visibility; only these entry points are exported (TensorRT's
// own TENSORRTAPI is empty outside TensorRT's build).
#include "subpixel_decode_plugin.h"

#include <cstdio>
#include <mutex>

namespace shfan
{
namespace
{

SubpixelDecodePluginCreator& creator()
{
    static SubpixelDecodePluginCreator instance;
    return instance;
}

std::mutex gLoggerMutex;
nvinfer1::ILoggerFinder* gLoggerFinder{nullptr};

struct StaticRegistrar
{
    bool registered{false};
    StaticRegistrar()
    {
        nvinfer1::IPluginRegistry* registry = getPluginRegistry();
        registered = registry != nullptr && registry->registerCreator(creator(), creator().getPluginNamespace());
    }
};

StaticRegistrar gStaticRegistrar;

} // namespace

void reportPluginError(char const* message) noexcept
{
    std::lock_guard<std::mutex> lock(gLoggerMutex);
    nvinfer1::ILogger* logger = gLoggerFinder != nullptr ? gLoggerFinder->findLogger() : nullptr;
    if (logger != nullptr)
    {
        logger->log(nvinfer1::ILogger::Severity::kERROR, message);
    }
    else
    {
        std::fprintf(stderr, "[shfan plugin] %s\n", message);
    }
}

} // namespace shfan

#define SHFAN_PLUGIN_EXPORT __attribute__((visibility("default")))

extern "C" SHFAN_PLUGIN_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    std::lock_guard<std::mutex> lock(shfan::gLoggerMutex);
    shfan::gLoggerFinder = finder;
}

extern "C" SHFAN_PLUGIN_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static nvinfer1::IPluginCreatorInterface* const kCreators[] = {&shfan::creator()};
    nbCreators = shfan::gStaticRegistrar.registered ? 0 : 1;
    return kCreators;
}
