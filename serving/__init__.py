"""TF Serving's REST and gRPC APIs over `<serving_dir>/<model_name>/<version>/`, and a video-file
client.

python -m serving --model-dir <serving_dir>/<model_name> [--host 127.0.0.1] [--port 8501]
                  [--grpc-port 8500]
python -m serving.client --video clip.avi --url http://127.0.0.1:8501 --model <model_name>
"""
