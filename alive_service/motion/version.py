"""Identity of the motion model: recorded with every video and in its C2PA manifest."""

MODEL_ID = "alive-motion"
MODEL_VERSION = "1.2.0"  # bump on any change to the motion or its inputs
FIELDS_FILE = "motion_fields.onnx"
RENDER_FILE = "motion_render.onnx"
MANIFEST_FILE = "motion.json"
CELL = 4  # output pixels per motion-field cell (both renderers upsample by exactly this)
