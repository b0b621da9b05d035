"""shfan-run: live facial landmarks from a camera, stream, video, image folder or the demo."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from shfan.cli.common import fail


def build_parser():
    ap = argparse.ArgumentParser(prog="shfan-run", description=__doc__)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--source", default=None,
                     help="demo (default), N, /dev/videoN, v4l2:///dev/videoN, csi://N, rtsp://..., "
                          "a video file or an image folder")
    src.add_argument("--camera", type=int, metavar="N", help="USB/V4L2 camera N (same as --source /dev/videoN)")
    ap.add_argument("--model", help="compact (default) | accurate | a shfan-build folder, .onnx or .engine")
    ap.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime"])
    ap.add_argument("--precision", help="precision to use from a build folder (default: the selected one)")
    ap.add_argument("--headless", action="store_true", help="no preview window")
    ap.add_argument("--output", metavar="VIDEO", help="write the annotated video (.mp4 or .avi)")
    ap.add_argument("--jsonl", metavar="FILE",
                    help="append one JSON line per frame ('-' for stdout); earlier lines are kept")
    ap.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    ap.add_argument("--smooth", action="store_true", help="One Euro smoothing of the landmarks")
    ap.add_argument("--detector-model", metavar="PATH",
                    help="YuNet face detector .onnx (default: $SHFAN_DETECTOR_MODEL, else downloaded once "
                         "to ~/.cache/shfan)")
    ap.add_argument("--max-faces", type=int, default=4, help="faces tracked at once (default 4)")
    ap.add_argument("--min-face", type=float, default=24.0, metavar="PX",
                    help="smallest face (width in frame pixels) to find; the detector sees the frame scaled "
                         "so such a face is 24 px: full size at 24 (default), half size at 48 (~4x cheaper)")
    ap.add_argument("--min-score", type=float, default=0.25,
                    help="mean heatmap score below which a track is dropped and re-detected (default 0.25)")
    ap.add_argument("--redetect-every", type=int, default=5, metavar="N",
                    help="run the face detector every N frames to check tracks and find new faces "
                         "(0: only when a track is lost; default 5)")
    ap.add_argument("--max-misses", type=int, default=1, metavar="N",
                    help="drop a track after N detector checks in a row found no face under it (default 1)")
    ap.add_argument("--stats-json", metavar="FILE", help="write per-stage latency and FPS as JSON at exit")
    ap.add_argument("--threads", type=int, metavar="N",
                    help="ONNX Runtime CPU threads (default: all cores, <= 8; capped at the cores available)")
    ap.add_argument("--quiet", action="store_true", help="no stats table at exit")
    return ap


class _Stop:
    """Ctrl-C / SIGTERM end the run cleanly (outputs finalised, stats printed)."""

    def __init__(self):
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                signal.signal(sig, self._handler)
            except ValueError:  # not the main thread (embedded use)
                pass

    def _handler(self, *_):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


def _source_uri(args) -> str:
    if args.camera is not None:
        if args.camera < 0:
            fail(f"--camera takes a camera number >= 0, got {args.camera}")
        return str(args.camera)
    return args.source or "demo"


def _check_args(args):
    if args.max_frames is not None and args.max_frames < 1:
        fail(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.max_faces < 1:
        fail(f"--max-faces must be >= 1, got {args.max_faces}")
    if args.redetect_every < 0:
        fail(f"--redetect-every must be >= 0, got {args.redetect_every}")
    if args.max_misses < 1:
        fail(f"--max-misses must be >= 1, got {args.max_misses}")
    if not args.min_face > 0:
        fail(f"--min-face must be > 0 px, got {args.min_face}")
    if args.threads is not None and args.threads < 1:
        fail(f"--threads must be >= 1, got {args.threads}")
    if args.threads is not None:
        from shfan.runtime.pipeline import available_cores

        cores = available_cores()
        if args.threads > cores:
            print(f"note: --threads {args.threads} capped at the {cores} cores available", file=sys.stderr)
            args.threads = cores


def main(argv=None):
    args = build_parser().parse_args(argv)
    _check_args(args)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)

    from shfan.errors import ShfanError
    from shfan.runtime import outputs
    from shfan.runtime.pipeline import Pipeline, PipelineOptions
    from shfan.runtime.sources import FrameSource

    uri = _source_uri(args)
    video = jsonl = window = pipeline = None
    error = None
    try:
        source = FrameSource(uri)  # parse first: a bad URI fails before the model loads
        options = PipelineOptions(running_mode="video", max_faces=args.max_faces, min_face=args.min_face,
                                  min_score=args.min_score, smooth=args.smooth, redetect_every=args.redetect_every,
                                  max_misses=args.max_misses, threads=args.threads)
        pipeline = Pipeline(args.model, args.backend, args.precision, options=options,
                            detector_model=args.detector_model)
        if not args.headless:
            usable, why = outputs.gui_available()
            if usable:
                window = outputs.Window()
            else:
                print(f"note: no preview window: {why}; continuing headless (use --headless to skip this)",
                      file=sys.stderr)
        if args.output:
            video = outputs.VideoSink(args.output)
        if args.jsonl:
            jsonl = outputs.JsonlSink(args.jsonl)  # checked now, opened (for appending) at the first frame
        stop = _Stop()
        for result in pipeline.stream(source, max_frames=args.max_frames):
            if jsonl:
                jsonl.write(result)
            if video or window:
                frame = outputs.annotate(result.image, result.faces, pipeline.stats.fps())
                if video:
                    video.write(frame)
                if window and not window.show(frame):
                    break
            if stop.requested:
                break
    except ShfanError as exc:
        error = str(exc)
    except KeyboardInterrupt:
        pass
    finally:
        if jsonl:
            jsonl.close()
        if video:
            video.close(keep=True)  # frames so far form a complete, playable file
        if window:
            window.close()
        if pipeline is not None:
            pipeline.close()
    if pipeline is not None and pipeline.stats.frames:
        summary = pipeline.stats.summary(source=uri, backend=getattr(pipeline, "backend_name", None),
                                         model=str(args.model or "default"))
        if args.stats_json:
            pipeline.stats.write_json(args.stats_json, summary)
        if not args.quiet:
            pipeline.stats.print_table(summary)
    if error:
        fail(error, code=1 if pipeline is not None and pipeline.stats.frames else 2)  # 1: failed mid-stream
    return 0


if __name__ == "__main__":
    sys.exit(main())
