// A minimal exmail-relay webhook receiver with the JDK alone (17+): com.sun.net.httpserver
// for HTTP, javax.crypto for the Standard Webhooks HMAC-SHA256 signature, verified
// against the raw body bytes (never against re-serialized JSON).
//
//   javac -d build WebhookReceiver.java
//   WEBHOOK_PORT=8000 WEBHOOK_SECRETS="whsec_..." java -cp build WebhookReceiver
//
// WEBHOOK_SECRETS holds the endpoint's secret; during a rotation the old and the new one,
// separated by spaces: a request is accepted when a signature verifies with any of them.
// It prints one JSON line per accepted event, {"refused": ...} for a refused request and
// {"ready": ...} once it listens. Hand the body to your JSON library (or the CloudEvents
// Java SDK) where it says so below.

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public final class WebhookReceiver {
    private static final int MAX_BODY = 1 << 20; // read a body whole, or refuse it
    private static final long TOLERANCE_SECONDS = 300; // replay protection
    private static final String STRUCTURED = "application/cloudevents+json";

    private final List<byte[]> keys = new ArrayList<>();
    // Delivery is at least once: webhook-id (the CloudEvent id) is the deduplication key.
    private final Set<String> seen = ConcurrentHashMap.newKeySet();

    WebhookReceiver(String secrets) {
        for (String secret : secrets.trim().split("\\s+")) {
            if (!secret.startsWith("whsec_")) {
                throw new IllegalArgumentException("a secret starts with whsec_");
            }
            keys.add(Base64.getDecoder().decode(secret.substring("whsec_".length())));
        }
    }

    /** The indexes of the secrets one of the request's signatures verifies with. */
    List<Integer> verify(String id, String timestamp, String signatures, byte[] body)
            throws GeneralSecurityException {
        List<Integer> verified = new ArrayList<>();
        long sent;
        try {
            sent = Long.parseLong(timestamp);
        } catch (NumberFormatException e) {
            return verified;
        }
        if (Math.abs(System.currentTimeMillis() / 1000 - sent) > TOLERANCE_SECONDS) {
            return verified;
        }
        byte[] prefix = (id + "." + timestamp + ".").getBytes(StandardCharsets.UTF_8);
        for (int index = 0; index < keys.size(); index++) {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(keys.get(index), "HmacSHA256"));
            mac.update(prefix);
            byte[] expected = mac.doFinal(body);
            for (String candidate : signatures.split(" ")) {
                if (!candidate.startsWith("v1,")) {
                    continue;
                }
                byte[] given;
                try {
                    given = Base64.getDecoder().decode(candidate.substring(3));
                } catch (IllegalArgumentException e) {
                    continue;
                }
                if (MessageDigest.isEqual(expected, given)) { // constant time
                    verified.add(index);
                    break;
                }
            }
        }
        return verified;
    }

    void handle(HttpExchange exchange) throws IOException {
        try (exchange) {
            byte[] body = readBody(exchange.getRequestBody());
            if (body == null) {
                exchange.sendResponseHeaders(413, -1);
                return;
            }
            var headers = exchange.getRequestHeaders();
            String id = headers.getFirst("webhook-id");
            String timestamp = headers.getFirst("webhook-timestamp");
            String signatures = headers.getFirst("webhook-signature");
            String contentType = headers.getFirst("Content-Type");
            if (id == null || timestamp == null || signatures == null) {
                refuse(exchange, 400, "missing webhook-id, webhook-timestamp or webhook-signature", id);
                return;
            }
            List<Integer> verified = verify(id, timestamp, signatures, body);
            if (verified.isEmpty()) {
                refuse(exchange, 401, "no signature verifies", id);
                return;
            }
            if (contentType == null || !contentType.startsWith(STRUCTURED)) {
                refuse(exchange, 415, "not a structured-mode CloudEvent: " + contentType, id);
                return;
            }
            // Verified: here a real receiver parses the body (a CloudEvent in structured
            // mode) and stores it, keyed by id, before answering 2xx.
            boolean duplicate = !seen.add(id);
            print("{\"via\":\"webhook\",\"id\":\"" + json(id) + "\",\"verified_with\":"
                    + verified + ",\"duplicate\":" + duplicate + ",\"content_type\":\""
                    + json(contentType) + "\",\"bytes\":" + body.length + "}");
            exchange.sendResponseHeaders(204, -1);
        } catch (GeneralSecurityException e) {
            exchange.sendResponseHeaders(500, -1);
        }
    }

    private static byte[] readBody(InputStream in) throws IOException {
        byte[] body = in.readNBytes(MAX_BODY + 1);
        return body.length > MAX_BODY ? null : body;
    }

    private static void refuse(HttpExchange exchange, int status, String why, String id)
            throws IOException {
        print("{\"via\":\"webhook\",\"refused\":\"" + json(why) + "\",\"id\":\""
                + json(String.valueOf(id)) + "\"}");
        exchange.sendResponseHeaders(status, -1);
    }

    private static synchronized void print(String line) {
        System.out.println(line);
        System.out.flush();
    }

    private static String json(String text) {
        StringBuilder out = new StringBuilder();
        for (char c : text.toCharArray()) {
            if (c == '"' || c == '\\') {
                out.append('\\').append(c);
            } else if (c < 0x20) {
                out.append(String.format("\\u%04x", (int) c));
            } else {
                out.append(c);
            }
        }
        return out.toString();
    }

    public static void main(String[] args) throws IOException {
        String secrets = System.getenv("WEBHOOK_SECRETS");
        if (secrets == null || secrets.isBlank()) {
            System.err.println("WEBHOOK_SECRETS is required");
            System.exit(2);
        }
        int port = Integer.parseInt(System.getenv().getOrDefault("WEBHOOK_PORT", "8000"));
        WebhookReceiver receiver = new WebhookReceiver(secrets);
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 0);
        server.createContext("/", receiver::handle);
        server.setExecutor(Executors.newFixedThreadPool(4));
        server.start();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> server.stop(1)));
        print("{\"ready\":{\"webhook_port\":" + server.getAddress().getPort() + "}}");
    }
}
