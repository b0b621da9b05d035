// Entry points that make TensorRT find shfan::SubpixelDecode v1:
//  * a static registrar, run when the library is dlopen'ed (ctypes.CDLL, trtexec --staticPlugins);
//  * getCreators / setLoggerFinder for IPluginRegistry::loadLibrary (load_library in Python,
//    trtexec --dynamicPlugins).
// loadLibrary dlopens the library first, which already runs the static registrar; registering the
// same creator twice makes loadLibrary fail ("creator ... exists already"), so getCreators hands
// out the creator only when the static registration did not take place.
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

extern "C" TENSORRTAPI void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    std::lock_guard<std::mutex> lock(shfan::gLoggerMutex);
    shfan::gLoggerFinder = finder;
}

extern "C" TENSORRTAPI nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static nvinfer1::IPluginCreatorInterface* const kCreators[] = {&shfan::creator()};
    nbCreators = shfan::gStaticRegistrar.registered ? 0 : 1;
    return kCreators;
}
