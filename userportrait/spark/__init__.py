"""Apache Spark: the same portraits computed by a cluster (the optional ``spark`` extra).

* ``session``   — the one SparkSession of a process, from the settings; the lake as Spark sees it;
* ``partitions`` — day partitions of the derived state built by Spark;
* ``build``     — ``spark build``: the embedded store's update policy over those partitions;
* ``sources``   — input files (local or ``s3a://``/``hdfs://``) as the standard raw columns;
* ``ingest``    — the bulk ingest as a Spark job (``spark ingest``).

The portrait engine itself is ``engine/spark.py``. Nothing here imports pyspark at import
time of the package; ``session.spark_session`` says how to install it when it is missing.
"""
