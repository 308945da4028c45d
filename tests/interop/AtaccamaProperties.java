import java.io.FileInputStream;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.Properties;
import java.util.TreeSet;

/**
 * Loads a rendered Ataccama application.properties with java.util.Properties, as the
 * product does, checks what Java alone can check, and prints every property as
 * "base64(key) base64(value)" for the test to compare with the expected values.
 *
 * Checks: generator.key is base64 (java.util.Base64) of a JSON object with a private
 * member "d"; every jwt-keys entry has a fingerprint and a boolean is-revoked; every
 * content is one JSON object line naming its own fingerprint as kid, without "d" or "use".
 */
public class AtaccamaProperties {
    static void check(boolean ok, String what) {
        if (!ok) throw new IllegalStateException("check failed: " + what);
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        try (FileInputStream in = new FileInputStream(args[0])) { props.load(in); }
        String generator = props.getProperty("ataccama.authentication.internal.jwt.generator.key");
        check(generator != null, "generator.key present");
        String keypair = new String(Base64.getDecoder().decode(generator), StandardCharsets.UTF_8);
        check(keypair.startsWith("{") && keypair.contains("\"d\":\""), "generator.key is a private JWK");
        for (String key : props.stringPropertyNames()) {
            if (!key.contains(".security.jwt-keys.") || !key.endsWith(".fingerprint")) continue;
            String base = key.substring(0, key.length() - ".fingerprint".length());
            String revoked = props.getProperty(base + ".is-revoked");
            check("true".equals(revoked) || "false".equals(revoked), base + ".is-revoked is boolean");
            String content = props.getProperty(base + ".content");
            if (content == null) { check("true".equals(revoked), base + " without content is revoked"); continue; }
            check(!content.contains("\n") && content.startsWith("{") && content.endsWith("}"), base + " one line");
            check(content.contains("\"kid\":\"" + props.getProperty(key) + "\""), base + " content names its kid");
            check(!content.contains("\"d\"") && !content.contains("\"use\""), base + " without d and use");
        }
        Base64.Encoder b64 = Base64.getEncoder();
        for (String key : new TreeSet<>(props.stringPropertyNames())) {
            System.out.println(b64.encodeToString(key.getBytes(StandardCharsets.UTF_8)) + " "
                + b64.encodeToString(props.getProperty(key).getBytes(StandardCharsets.UTF_8)));
        }
    }
}
