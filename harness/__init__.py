"""What the tests and the benchmarks share to drive the studio as its users meet it: the real test
images (paths), a real server and headless Chromium (studio), a real Ray cluster on this machine
(ray_cluster), waiting for what another process makes true (waiting), and the image metrics
(metrics)."""
