"""Feature names of the examples, in one place: ingest, schema, Transform, Trainer, TFMA, serving.

Raw examples (written by data.ingest, one per video):
  frames      bytes, one JPEG per stored frame (variable length): frame k is the frame showing
              at k * time_step seconds after the first, covering the whole video (data/video.py)
  label       int64, 0-based class index (classInd order, or sorted folder names)
  label_name  bytes, the class name
  video_id    bytes, file stem, e.g. v_ApplyEyeMakeup_g08_c01
  group       bytes, UCF101 group (actor/scene), e.g. v_ApplyEyeMakeup_g08
  num_frames  int64, len(frames)
  fps         float, the container's average frame rate
  time_step   float, seconds between consecutive stored frames: frame_stride / fps, doubled as
              often as needed to keep a long video within max_frames (data/ingest.py)
  height, width  int64, stored frame size
"""

FRAMES = "frames"
LABEL = "label"
LABEL_NAME = "label_name"
VIDEO_ID = "video_id"
GROUP = "group"
NUM_FRAMES = "num_frames"
FPS = "fps"
TIME_STEP = "time_step"
HEIGHT = "height"
WIDTH = "width"
