// SubpixelDecode attributes from TensorRT plugin fields, without TensorRT: the creator (plugin)
// and the host test library (subpixel_decode_host.cpp) run this same parsing and validation, so
// the plugin creator's refusals are unit-tested on a CPU machine (plugins/tests).
#pragma once

#include "shfan/subpixel_decode.h"

#include <cstdint>
#include <cstring>

namespace shfan
{

// nvinfer1::PluginFieldType values (identical in TensorRT 10.x and 11.x; the plugin static_asserts
// them against the real enum).
enum FieldType : int32_t
{
    kFieldFloat16 = 0,
    kFieldFloat32 = 1,
    kFieldFloat64 = 2,
    kFieldInt8 = 3,
    kFieldInt16 = 4,
    kFieldInt32 = 5,
    kFieldInt64 = 10,
};

struct DecodeParams
{
    int32_t window{5};
    float temperature{12.f};
    float scale{1.f};
};

// The ONNX parser may hand attributes over as any int / float width; accept them all, but never
// truncate an int64 that does not fit (it was silently cut to 32 bits).
inline char const* readIntField(int32_t type, void const* data, int32_t& out)
{
    switch (type)
    {
    case kFieldInt8: out = *static_cast<int8_t const*>(data); return nullptr;
    case kFieldInt16: out = *static_cast<int16_t const*>(data); return nullptr;
    case kFieldInt32: out = *static_cast<int32_t const*>(data); return nullptr;
    case kFieldInt64:
    {
        int64_t const v = *static_cast<int64_t const*>(data);
        if (v < INT32_MIN || v > INT32_MAX)
        {
            return "shfan::SubpixelDecode: window does not fit in 32 bits; use an odd window such as 5";
        }
        out = static_cast<int32_t>(v);
        return nullptr;
    }
    default: return "shfan::SubpixelDecode: window must be an integer attribute (e.g. window=5)";
    }
}

inline char const* readFloatField(int32_t type, void const* data, float& out, char const* typeError)
{
    switch (type)
    {
    case kFieldFloat16: out = halfBitsToFloat(*static_cast<uint16_t const*>(data)); return nullptr;
    case kFieldFloat32: out = *static_cast<float const*>(data); return nullptr;
    case kFieldFloat64: out = static_cast<float>(*static_cast<double const*>(data)); return nullptr;
    default: return typeError;
    }
}

// Applies one field to params; nullptr when accepted, else the one-line message naming the fix.
// Unknown fields are ignored (TensorRT and the ONNX parser may pass extra ones).
inline char const* applyDecodeField(char const* name, int32_t type, void const* data, int32_t length, DecodeParams& params)
{
    if (name == nullptr)
    {
        return nullptr;
    }
    bool const known = std::strcmp(name, "window") == 0 || std::strcmp(name, "temperature") == 0
        || std::strcmp(name, "scale") == 0;
    if (!known)
    {
        return nullptr;
    }
    if (data == nullptr || length < 1)
    {
        return "shfan::SubpixelDecode: an attribute (window, temperature or scale) has no value";
    }
    if (std::strcmp(name, "window") == 0)
    {
        return readIntField(type, data, params.window);
    }
    if (std::strcmp(name, "temperature") == 0)
    {
        return readFloatField(type, data, params.temperature,
            "shfan::SubpixelDecode: temperature must be a float attribute (e.g. temperature=12.0)");
    }
    return readFloatField(
        type, data, params.scale, "shfan::SubpixelDecode: scale must be a float attribute (e.g. scale=4.0)");
}

// The values themselves; nullptr when usable, else which one is wrong and what it must be.
inline char const* checkDecodeParams(DecodeParams const& params)
{
    if (params.window < 1 || params.window % 2 == 0)
    {
        return "shfan::SubpixelDecode: window must be a positive odd number (e.g. 5)";
    }
    if (!(params.temperature > 0.f && params.temperature < INFINITY))
    {
        return "shfan::SubpixelDecode: temperature must be a finite number > 0 (e.g. 12); a negative one gives NaN landmarks";
    }
    if (!(params.scale > 0.f && params.scale < INFINITY))
    {
        return "shfan::SubpixelDecode: scale must be a finite number > 0 (heatmap px -> input px, e.g. 4)";
    }
    return nullptr;
}

} // namespace shfan
