// SubpixelDecode TensorRT plugin: shape/type negotiation and the enqueue into the CUDA kernel.
#include "subpixel_decode_plugin.h"

#include "shfan/subpixel_decode.h"
#include "subpixel_decode_kernel.h"

#include <climits>
#include <cstring>
#include <new>
#include <string>

namespace shfan
{
namespace
{

using nvinfer1::DataType;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldType;

constexpr char const* kPluginName = "SubpixelDecode";
constexpr char const* kPluginVersion = "1";
constexpr char const* kPluginNamespace = "shfan";
constexpr int32_t kNbInputs = 1;
constexpr int32_t kNbOutputs = 2;

// decode_fields.h mirrors PluginFieldType's values so its parsing compiles (and is tested) without TensorRT.
static_assert(static_cast<int32_t>(PluginFieldType::kFLOAT16) == kFieldFloat16, "PluginFieldType changed");
static_assert(static_cast<int32_t>(PluginFieldType::kFLOAT32) == kFieldFloat32, "PluginFieldType changed");
static_assert(static_cast<int32_t>(PluginFieldType::kFLOAT64) == kFieldFloat64, "PluginFieldType changed");
static_assert(static_cast<int32_t>(PluginFieldType::kINT8) == kFieldInt8, "PluginFieldType changed");
static_assert(static_cast<int32_t>(PluginFieldType::kINT16) == kFieldInt16, "PluginFieldType changed");
static_assert(static_cast<int32_t>(PluginFieldType::kINT32) == kFieldInt32, "PluginFieldType changed");
static_assert(static_cast<int32_t>(PluginFieldType::kINT64) == kFieldInt64, "PluginFieldType changed");

// Fills params from a field collection (decode_fields.h); a bad attribute is logged with its fix
// and refused, so the build stops at the node instead of producing NaN landmarks.
bool parseFields(nvinfer1::PluginFieldCollection const* fc, DecodeParams& params)
{
    for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        char const* error = applyDecodeField(f.name, static_cast<int32_t>(f.type), f.data, f.length, params);
        if (error != nullptr)
        {
            reportPluginError(error);
            return false;
        }
    }
    char const* error = checkDecodeParams(params);
    if (error != nullptr)
    {
        reportPluginError(error);
        return false;
    }
    return true;
}

bool isHeatmapInput(nvinfer1::PluginTensorDesc const& d)
{
    return d.dims.nbDims == 4 && (d.type == DataType::kFLOAT || d.type == DataType::kHALF);
}

} // namespace

// ------------------------------------------------------------------------------ plugin

SubpixelDecodePlugin::SubpixelDecodePlugin(DecodeParams const& params)
    : mParams(params)
{
}

nvinfer1::IPluginCapability* SubpixelDecodePlugin::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

nvinfer1::IPluginV3* SubpixelDecodePlugin::clone() noexcept
{
    // The plugin holds only its attributes (no device memory, no handles): a copy is a full clone.
    return new (std::nothrow) SubpixelDecodePlugin(mParams);
}

char const* SubpixelDecodePlugin::getPluginName() const noexcept
{
    return kPluginName;
}

char const* SubpixelDecodePlugin::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* SubpixelDecodePlugin::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

int32_t SubpixelDecodePlugin::getNbOutputs() const noexcept
{
    return kNbOutputs;
}

int32_t SubpixelDecodePlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbInputs != kNbInputs || nbOutputs != kNbOutputs || in[0].desc.dims.nbDims != 4)
    {
        reportPluginError("shfan::SubpixelDecode: expects one [B, K, H, W] input and two outputs");
        return -1;
    }
    return 0;
}

bool SubpixelDecodePlugin::supportsFormatCombination(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != kNbInputs || nbOutputs != kNbOutputs || pos < 0 || pos >= kNbInputs + kNbOutputs)
    {
        return false;
    }
    nvinfer1::PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != nvinfer1::TensorFormat::kLINEAR)
    {
        return false;
    }
    // pos 0: heatmaps (fp32 or fp16, so an fp16 network needs no cast); pos 1, 2: fp32 outputs.
    return pos == 0 ? (d.type == DataType::kFLOAT || d.type == DataType::kHALF) : d.type == DataType::kFLOAT;
}

int32_t SubpixelDecodePlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* /*inputTypes*/, int32_t nbInputs) const noexcept
{
    if (nbInputs != kNbInputs || nbOutputs != kNbOutputs)
    {
        return -1;
    }
    outputTypes[0] = DataType::kFLOAT;
    outputTypes[1] = DataType::kFLOAT;
    return 0;
}

int32_t SubpixelDecodePlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    if (nbInputs != kNbInputs || nbOutputs != kNbOutputs || inputs[0].nbDims != 4)
    {
        reportPluginError("shfan::SubpixelDecode: heatmaps must be 4-D [B, K, H, W]");
        return -1;
    }
    // B and K pass through as expressions, so a dynamic batch stays dynamic.
    outputs[0].nbDims = 3;
    outputs[0].d[0] = inputs[0].d[0];
    outputs[0].d[1] = inputs[0].d[1];
    outputs[0].d[2] = exprBuilder.constant(2);
    outputs[1].nbDims = 2;
    outputs[1].d[0] = inputs[0].d[0];
    outputs[1].d[1] = inputs[0].d[1];
    return 0;
}

size_t SubpixelDecodePlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* /*inputs*/,
    int32_t /*nbInputs*/, nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    return 0;
}

int32_t SubpixelDecodePlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    return (nbInputs == kNbInputs && nbOutputs == kNbOutputs && isHeatmapInput(in[0])) ? 0 : -1;
}

int32_t SubpixelDecodePlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs, void* const* outputs,
    void* /*workspace*/, cudaStream_t stream) noexcept
{
    nvinfer1::Dims const& dims = inputDesc[0].dims;
    if (!isHeatmapInput(inputDesc[0]) || dims.d[0] > INT_MAX || dims.d[1] > INT_MAX
        || dims.d[2] * dims.d[3] > INT_MAX)
    {
        reportPluginError("shfan::SubpixelDecode: enqueue got heatmaps that are not a linear float32/float16 "
                          "[B, K, H, W] tensor of at most 2^31 cells per map");
        return -1;
    }
    // Only a kernel launch on TensorRT's stream: no allocation, no sync (CUDA-graph safe). The
    // launcher returns this launch's own status (not an earlier kernel's sticky error).
    cudaError_t const status = launchSubpixelDecode(inputs[0], inputDesc[0].type == DataType::kHALF,
        static_cast<int>(dims.d[0]), static_cast<int>(dims.d[1]), static_cast<int>(dims.d[2]),
        static_cast<int>(dims.d[3]), mParams.window, mParams.temperature, mParams.scale,
        static_cast<float*>(outputs[0]), static_cast<float*>(outputs[1]), stream);
    if (status != cudaSuccess)
    {
        std::string const message = std::string("shfan::SubpixelDecode: kernel launch failed: ")
            + cudaGetErrorName(status) + " (" + cudaGetErrorString(status)
            + "); check that libshfan_plugins.so was built for this GPU's SM (plugins/README.md)";
        reportPluginError(message.c_str());
        return -1;
    }
    return 0;
}

nvinfer1::IPluginV3* SubpixelDecodePlugin::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept
{
    return clone(); // no per-context resources
}

nvinfer1::PluginFieldCollection const* SubpixelDecodePlugin::getFieldsToSerialize() noexcept
{
    mSerialFields = {
        PluginField("window", &mParams.window, PluginFieldType::kINT32, 1),
        PluginField("temperature", &mParams.temperature, PluginFieldType::kFLOAT32, 1),
        PluginField("scale", &mParams.scale, PluginFieldType::kFLOAT32, 1),
    };
    mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialCollection.fields = mSerialFields.data();
    return &mSerialCollection;
}

// ------------------------------------------------------------------------------ creator

SubpixelDecodePluginCreator::SubpixelDecodePluginCreator()
    : mFieldNames{
        PluginField("window", nullptr, PluginFieldType::kINT32, 1),
        PluginField("temperature", nullptr, PluginFieldType::kFLOAT32, 1),
        PluginField("scale", nullptr, PluginFieldType::kFLOAT32, 1),
    }
{
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

char const* SubpixelDecodePluginCreator::getPluginName() const noexcept
{
    return kPluginName;
}

char const* SubpixelDecodePluginCreator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* SubpixelDecodePluginCreator::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

nvinfer1::PluginFieldCollection const* SubpixelDecodePluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

nvinfer1::IPluginV3* SubpixelDecodePluginCreator::createPlugin(
    char const* /*name*/, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    // Build and runtime phases carry the same three fields (getFieldsToSerialize writes them).
    DecodeParams params;
    if (!parseFields(fc, params))
    {
        return nullptr;
    }
    return new (std::nothrow) SubpixelDecodePlugin(params);
}

} // namespace shfan
