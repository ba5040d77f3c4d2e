"""Real DDS between processes, with the project's Fast DDS profile."""
from conftest import PYTHON, spin_until


def test_rgbd_30hz_for_5s_reaches_another_process(ros_processes, rclpy_node):
    from sensor_msgs.msg import Image

    from movseg_ros.conversions import image_to_array
    from movseg_ros.qos import qos_by_name

    got = {"rgb8": 0, "16UC1": 0}
    shapes = set()

    def on_image(msg):
        got[msg.encoding] = got.get(msg.encoding, 0) + 1
        shapes.add(image_to_array(msg).shape)

    rclpy_node.create_subscription(Image, "/camera/color/image_raw", on_image, qos_by_name("sensor_data"))
    rclpy_node.create_subscription(Image, "/camera/depth/image_raw", on_image, qos_by_name("sensor_data"))
    sent = 150  # 5 s at 30 Hz
    player = ros_processes([PYTHON, "-m", "movseg_ros.cli", "play", "--rate", "30", "--count", str(sent),
                            "--wait", "20"], "player")
    done = spin_until(rclpy_node, lambda: player.proc.poll() is not None, timeout=60)
    assert done and player.proc.returncode == 0, player.output()
    spin_until(rclpy_node, lambda: min(got.values()) >= sent, timeout=1.0)  # drain in-flight samples
    assert "published 150 frames" in player.output()
    assert got["rgb8"] >= 0.95 * sent, (got, player.output())
    assert got["16UC1"] >= 0.95 * sent, (got, player.output())
    assert shapes == {(480, 640, 3), (480, 640)}
