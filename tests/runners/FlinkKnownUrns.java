// Prints the transform URNs the Flink job server's portable translators accept, one a line
// ("streaming <urn>" / "batch <urn>"). Run with the job-server jar on the class path:
//   java -cp <job-server jar> tests/runners/FlinkKnownUrns.java
import org.apache.beam.runners.flink.FlinkBatchPortablePipelineTranslator;
import org.apache.beam.runners.flink.FlinkStreamingPortablePipelineTranslator;

public class FlinkKnownUrns {
  public static void main(String[] args) {
    for (String urn : new FlinkStreamingPortablePipelineTranslator().knownUrns()) {
      System.out.println("streaming " + urn);
    }
    for (String urn : FlinkBatchPortablePipelineTranslator.createTranslator().knownUrns()) {
      System.out.println("batch " + urn);
    }
  }
}
