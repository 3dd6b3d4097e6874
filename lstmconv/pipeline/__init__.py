"""lstmconv.pipeline"""
