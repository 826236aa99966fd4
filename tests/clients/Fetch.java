import java.net.HttpURLConnection;
import java.net.ProxySelector;
import java.net.URI;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

/** Fetches a URL with both of the JDK's HTTP clients and prints their statuses. */
public class Fetch {
    public static void main(String[] args) throws Exception {
        HttpURLConnection connection = (HttpURLConnection) new URL(args[0]).openConnection();
        int legacy = connection.getResponseCode();
        connection.getInputStream().readAllBytes();
        HttpClient client = HttpClient.newBuilder().proxy(ProxySelector.getDefault()).build();
        HttpRequest request = HttpRequest.newBuilder(URI.create(args[0])).build();
        int modern = client.send(request, HttpResponse.BodyHandlers.discarding()).statusCode();
        System.out.println(legacy + " " + modern);
    }
}
