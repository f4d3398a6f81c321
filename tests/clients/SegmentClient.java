import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

/**
 * A client of `cellpoint serve` that needs only the JDK (java.net.http, Java 11+), as acquisition software
 * written in Java (Micro-Manager, a plugin) would call it.
 *
 * <pre>
 *   java SegmentClient.java URL FRAME.tif LABELS.tif [QUERY]
 *   java SegmentClient.java URL FRAME.raw LABELS.tif [QUERY] --shape 512,512 --dtype uint16
 * </pre>
 *
 * Sends the frame (a TIFF file, or raw little-endian pixels with their shape and dtype) to URL/segment, asks
 * for the label image as TIFF, writes it to LABELS.tif and prints the cell count and the server's timing.
 * QUERY is passed on as is, e.g. "diameter=30&pixel_size=0.65". The token, if the service needs one, is read
 * from the environment variable CELLPOINT_TOKEN. Exit status: 0 done, 1 the service refused the frame (its
 * one-line reason is printed), 2 usage.
 */
public final class SegmentClient {
    private static final HttpClient CLIENT = HttpClient.newBuilder()
            .connectTimeout(Duration.ofSeconds(10))
            .build();

    public static void main(String[] args) throws IOException, InterruptedException {
        String shape = null;
        String dtype = null;
        java.util.List<String> positional = new java.util.ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            if (args[i].equals("--shape") && i + 1 < args.length) {
                shape = args[++i];
            } else if (args[i].equals("--dtype") && i + 1 < args.length) {
                dtype = args[++i];
            } else {
                positional.add(args[i]);
            }
        }
        if (positional.size() < 3 || (shape == null) != (dtype == null)) {
            System.err.println("usage: SegmentClient URL FRAME LABELS.tif [QUERY] [--shape H,W --dtype uint16]");
            System.exit(2);
        }
        String query = positional.size() > 3 ? "?" + positional.get(3) : "";
        byte[] frame = Files.readAllBytes(Path.of(positional.get(1)));
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(positional.get(0) + "/segment" + query))
                .timeout(Duration.ofMinutes(5))
                .header("Accept", "image/tiff")
                .POST(HttpRequest.BodyPublishers.ofByteArray(frame));
        if (shape != null) {  // raw pixels: the service needs only their shape and dtype
            request.header("Content-Type", "application/octet-stream")
                    .header("X-Shape", shape)
                    .header("X-Dtype", dtype);
        } else {
            request.header("Content-Type", "image/tiff");
        }
        String token = System.getenv("CELLPOINT_TOKEN");
        if (token != null && !token.isEmpty()) {
            request.header("Authorization", "Bearer " + token);
        }
        HttpResponse<byte[]> response = CLIENT.send(request.build(), HttpResponse.BodyHandlers.ofByteArray());
        if (response.statusCode() != 200) {
            System.err.println("HTTP " + response.statusCode() + ": "
                    + new String(response.body(), StandardCharsets.UTF_8).trim());
            System.exit(1);
        }
        Files.write(Path.of(positional.get(2)), response.body());
        System.out.println("cells: " + response.headers().firstValue("X-Cells").orElse("?"));
        System.out.println("timing: " + response.headers().firstValue("Server-Timing").orElse(""));
    }

    /** A camera's 16-bit pixels (row by row) as the bytes of a raw frame: little-endian, as X-Dtype uint16 says. */
    static byte[] rawUint16(short[] pixels) {
        ByteBuffer buffer = ByteBuffer.allocate(2 * pixels.length).order(ByteOrder.LITTLE_ENDIAN);
        buffer.asShortBuffer().put(pixels);
        return buffer.array();
    }
}
